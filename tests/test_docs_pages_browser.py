"""FastAPI's /docs (Swagger UI) and /redoc in a real headless Chromium, under the default CSP.

The default service (``tests/scanners/default_app.py``) runs behind nginx on ``https://service.example.com``;
``cdn.jsdelivr.net`` (and the fonts and favicon hosts of the pages) are answered by a local stand-in serving the
npm packages ``swagger-ui-dist`` and ``redoc``. Chromium reaches both by ``--host-resolver-rules`` and accepts
their certificate (from a test CA) by ``--ignore-certificate-errors-spki-list``. No browser download: Playwright
drives Debian's /usr/bin/chromium.

Each page must render with no CSP violation (no ``securitypolicyviolation`` event, no console message), and
Swagger UI's "Try it out" must get a live 200 from the service.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import missing
from tests.scanners.fixtures import (
    CDN_HOSTS,
    PUBLIC_HOST,
    CdnStandIn,
    DefaultApp,
    NginxFront,
    TestCA,
    require_node_modules,
    temporary_directory,
)

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# Runs before the page's own scripts (through DevTools, so the page's CSP does not apply to it).
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(event.violatedDirective + " " + event.blockedURI + " " + event.sample);
});
"""


@dataclass
class Site:
    url: str
    cdn: CdnStandIn
    browser: Any


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    if not os.path.exists(CHROMIUM) and shutil.which("chromium") is None:
        missing("chromium (Debian package)")
    sync_api = pytest.importorskip("playwright.sync_api")
    require_node_modules("swagger-ui-dist", "redoc")
    directory = temporary_directory("c2c-docs-browser-")
    ca = TestCA(directory, (PUBLIC_HOST, *CDN_HOSTS))
    cdn = CdnStandIn(ca)
    app = DefaultApp(directory)
    try:
        front = NginxFront(directory, ca, app.port)
        try:
            rules = f"MAP {PUBLIC_HOST}:443 127.0.0.1:{front.port}, {cdn.host_resolver_rules()}"
            args = [
                *CHROMIUM_ARGS,
                f"--host-resolver-rules={rules}, EXCLUDE localhost",
                f"--ignore-certificate-errors-spki-list={ca.spki_sha256}",
            ]
            with sync_api.sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args, timeout=30_000)
                try:
                    yield Site(url=f"https://{PUBLIC_HOST}", cdn=cdn, browser=browser)
                finally:
                    browser.close()
        finally:
            front.close()
    finally:
        app.close()
        cdn.close()
        shutil.rmtree(directory, ignore_errors=True)


class PageProblems:
    """Console messages, uncaught exceptions and failed requests of one page."""

    def __init__(self, page: Any) -> None:
        self.console: list[str] = []
        self.exceptions: list[str] = []
        self.failed: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.exceptions.append(str(error)))
        page.on("requestfailed", lambda request: self.failed.append(f"{request.url} {request.failure}"))

    def _console(self, message: Any) -> None:
        if message.type in ("error", "warning") or "Content Security Policy" in message.text:
            self.console.append(f"{message.type}: {message.text}")

    def assert_none(self, page: Any) -> None:
        violations = page.evaluate("window.__cspViolations")
        assert violations == [], violations
        assert self.console == [], self.console
        assert self.exceptions == [], self.exceptions
        assert self.failed == [], self.failed


def _open(site: Site, path: str) -> tuple[Any, Any, PageProblems, Any]:
    context = site.browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    context.add_init_script(RECORD_VIOLATIONS)
    page = context.new_page()
    problems = PageProblems(page)
    response = page.goto(f"{site.url}{path}")
    assert response is not None
    assert response.status == 200
    return context, page, problems, response


def test_swagger_ui_renders_and_try_it_out_gets_a_live_200(site: Site) -> None:
    context, page, problems, response = _open(site, "/docs")
    try:
        csp = response.headers["content-security-policy"]
        assert "'unsafe-inline'" not in csp
        assert "'sha256-" in csp
        # The inline start-up script ran (allowed by its hash) and Swagger UI rendered the operations.
        operation = page.locator(".opblock-get").first
        operation.wait_for()
        assert page.locator(".info .title").inner_text().startswith("graded service")
        operation.locator(".opblock-summary").click()
        page.locator(".try-out__btn").click()
        page.locator(".execute").click()
        status = page.locator(".live-responses-table .response .response-col_status").first
        status.wait_for()
        assert status.inner_text().strip().startswith("200")
        assert '"hello": "world"' in page.locator(".live-responses-table").first.inner_text()
        page.wait_for_load_state("networkidle")
        problems.assert_none(page)
        assert "cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js" in site.cdn.requests
    finally:
        context.close()


def test_redoc_renders(site: Site) -> None:
    context, page, problems, response = _open(site, "/redoc")
    try:
        assert "'unsafe-inline'" not in response.headers["content-security-policy"].split("style-src")[0]
        page.locator("h1", has_text="graded service").first.wait_for()
        # The operation, from /openapi.json, rendered in the side menu and the page.
        page.locator("[role=menuitem]", has_text="Hello").first.wait_for()
        page.locator("h2", has_text="Hello").first.wait_for()
        page.wait_for_load_state("networkidle")
        problems.assert_none(page)
        assert "cdn.jsdelivr.net/npm/redoc@2/bundles/redoc.standalone.js" in site.cdn.requests
    finally:
        context.close()


def test_a_page_whose_inline_script_was_changed_is_blocked(site: Site) -> None:
    """The hash is the CSP's only allowance for inline code: a different inline script must be refused."""
    context, page, _problems, _response = _open(site, "/docs")
    try:
        page.locator(".opblock-get").first.wait_for()
        # An inline script inserted now (as an injection would) is blocked, and reported as a violation.
        page.evaluate(
            """() => { const s = document.createElement("script"); s.textContent = "window.__injected = 1";
            document.body.appendChild(s); }"""
        )
        for _ in range(50):  # polled from here: wait_for_function would need 'unsafe-eval'
            if page.evaluate("window.__cspViolations.length"):
                break
            page.wait_for_timeout(100)
        assert page.evaluate("window.__injected") is None
        assert any(violation.startswith("script-src") for violation in page.evaluate("window.__cspViolations"))
    finally:
        context.close()
