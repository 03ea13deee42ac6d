"""Assertions shared by the framework tests: security headers, CSP nonces, a health check to register."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from c2casgiutils import health_checks
from c2casgiutils.headers import CSP_NONCE, HeaderMatcher

NONCE_RE = re.compile(r"'nonce-([A-Za-z0-9_-]+)'")
# An HTML page of the framework whose inline script and style carry the request's nonce.
PAGE_HEADERS_CONFIG: dict[str, HeaderMatcher] = {
    "page": {
        "path_match": r"^/(page|hello)$",
        "headers": {
            "Content-Security-Policy": {
                "default-src": ["'self'"],
                "script-src": ["'self'", CSP_NONCE],
                "style-src": ["'self'", CSP_NONCE],
                "frame-ancestors": ["'none'"],
            }
        },
    }
}


def page_html(nonce: str) -> str:
    """The page a framework renders with ``request.state.nonce``."""
    return f'<!doctype html><style nonce="{nonce}">p{{}}</style><p>hi</p><script nonce="{nonce}">1</script>'


def assert_page_nonce(response: httpx.Response) -> str:
    """The nonce in the CSP is the one the framework put in its HTML (script and style); return it."""
    assert response.status_code == 200, response.text
    nonce = csp_nonce(response)
    assert f"'nonce-{nonce}'" in response.headers["content-security-policy"].split("style-src")[1]
    assert response.text.count(f'nonce="{nonce}"') == 2, response.text
    return nonce


def assert_armored(response: httpx.Response, *, hsts: bool) -> None:
    """The default security headers of ArmorHeaderMiddleware are on the response, each exactly once."""
    headers = response.headers
    for name in ("x-frame-options", "x-content-type-options", "referrer-policy", "content-security-policy"):
        assert len(headers.get_list(name)) == 1, (name, headers.get_list(name))
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["cross-origin-opener-policy"] == "same-origin"
    if hsts:
        assert headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    else:
        assert "strict-transport-security" not in headers


def csp_nonce(response: httpx.Response) -> str:
    """The nonce of the script-src directive of the response's CSP."""
    csp = response.headers["content-security-policy"]
    script_src = next(part for part in csp.split(";") if part.strip().startswith("script-src"))
    match = NONCE_RE.search(script_src)
    assert match is not None, csp
    return match.group(1)


class FrameworkProbe(health_checks.Check):
    """A health check that reports which framework hosted the request; fails on demand."""

    def __init__(self, name: str, failing: bool = False) -> None:
        super().__init__(tags=["frameworks"], name=name)
        self.failing = failing
        self.runs = 0

    async def check(self) -> health_checks.Result:
        self.runs += 1
        if self.failing:
            return health_checks.Result(status_code=500, payload={"error": "probe told to fail"})
        return health_checks.Result(payload={"runs": self.runs})


@contextmanager
def registered_probes(prefix: str) -> Iterator[tuple[FrameworkProbe, FrameworkProbe]]:
    """A healthy and a failing probe on the global FACTORY for the duration of the block."""
    healthy = FrameworkProbe(f"{prefix}_ok")
    failing = FrameworkProbe(f"{prefix}_broken", failing=True)
    health_checks.FACTORY.add(healthy)
    health_checks.FACTORY.add(failing)
    try:
        yield healthy, failing
    finally:
        health_checks.FACTORY.remove(healthy)
        health_checks.FACTORY.remove(failing)
