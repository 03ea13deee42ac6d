"""Slow down guessing: after too many failed attempts from one client, answer 429 until the window passes.

The counter is per process (each worker counts on its own), bounded in memory.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict, deque

from fastapi import HTTPException, Request, status

from c2casgiutils import config

_MAX_CLIENTS = 10_000
# One IPv6 client usually holds a whole /64 (SLAAC, privacy addresses): counting per address would give
# it 2**64 fresh counters.
_IPV6_CLIENT_PREFIX = 64


class FailureLimiter:
    """Failed authentication attempts per client within the configured window."""

    def __init__(self) -> None:
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, client: str, now: float) -> deque[float] | None:
        failures = self._failures.get(client)
        if failures is None:
            return None
        window = config.settings.auth.rate_limit.window.total_seconds()
        while failures and failures[0] <= now - window:
            failures.popleft()
        if not failures:
            del self._failures[client]
            return None
        return failures

    def retry_after(self, client: str) -> float | None:
        """Seconds the client must wait, or None when it may try again."""
        now = time.monotonic()
        failures = self._recent(client, now)
        if failures is None or len(failures) < config.settings.auth.rate_limit.max_failures:
            return None
        window = config.settings.auth.rate_limit.window.total_seconds()
        return max(failures[-config.settings.auth.rate_limit.max_failures] + window - now, 0.0)

    def record_failure(self, client: str) -> None:
        """Count one failed attempt."""
        now = time.monotonic()
        failures = self._recent(client, now) or deque()
        failures.append(now)
        # Only the last max_failures entries matter for the decision.
        while len(failures) > config.settings.auth.rate_limit.max_failures:
            failures.popleft()
        self._failures[client] = failures
        self._failures.move_to_end(client)
        while len(self._failures) > _MAX_CLIENTS:
            self._failures.popitem(last=False)

    def reset(self) -> None:
        """Forget every failure (tests)."""
        self._failures.clear()


LIMITER = FailureLimiter()


def client_key(request: Request) -> str:
    """The client (after ForwardedHeadersMiddleware, when the service trusts its proxy): its IPv4 address,
    or its IPv6 /64 network."""
    if request.client is None:
        return "unknown"
    host = request.client.host
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, _IPV6_CLIENT_PREFIX), strict=False))
    return host


def ensure_not_blocked(request: Request) -> None:
    """Raise 429 when this client failed too often recently."""
    retry_after = LIMITER.retry_after(client_key(request))
    if retry_after is not None:
        seconds = max(math.ceil(retry_after), 1)
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"Too many failed authentication attempts from this client: retry in {seconds} s",
            headers={"Retry-After": str(seconds)},
        )


def record_failure(request: Request) -> None:
    """Count a failed authentication attempt of this client."""
    LIMITER.record_failure(client_key(request))
