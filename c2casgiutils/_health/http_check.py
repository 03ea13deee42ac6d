"""HTTP check: a GET (or other method) on a URL must answer the expected status."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

import httpx

from c2casgiutils import _sensitive
from c2casgiutils._health.check import Check
from c2casgiutils._health.models import Result


class HTTP(Check):
    """Call ``url`` with httpx; healthy when the status is ``expected_status`` (an int or several)."""

    def __init__(
        self,
        url: str,
        expected_status: int | Iterable[int] = 200,
        timeout: float | timedelta | None = None,
        *,
        tags: Iterable[str] | None = None,
        name: str | None = None,
        cache_ttl: float | timedelta | None = None,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        follow_redirects: bool = False,
    ) -> None:
        """Configure the check; ``headers`` (e.g. Authorization) are sent but never reported."""
        super().__init__(tags=tags, name=name, timeout=timeout, cache_ttl=cache_ttl)
        parsed = httpx.URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"expected an http(s) URL, got {_sensitive.mask_url(url)!r}")
        self.url = url
        self.expected_status = (
            frozenset([expected_status]) if isinstance(expected_status, int) else frozenset(expected_status)
        )
        if not self.expected_status:
            raise ValueError("expected_status must name at least one status")
        self.method = method.upper()
        self.headers = dict(headers or {})
        self.follow_redirects = follow_redirects

    async def check(self) -> Result:
        """Call the URL within the check's timeout."""
        payload: dict[str, Any] = {
            "url": _sensitive.mask_url(self.url),
            "expected_status": sorted(self.expected_status),
        }
        try:
            async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=self.follow_redirects) as client:
                response = await client.request(self.method, self.url, headers=self.headers)
        except httpx.HTTPError as error:
            payload["error"] = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            return Result(status_code=500, payload=payload)
        payload["status"] = response.status_code
        if response.status_code not in self.expected_status:
            payload["error"] = f"unexpected status {response.status_code}"
            return Result(status_code=500, payload=payload)
        return Result(payload=payload)
