"""Slow down guessing: after ``max_failures`` failed attempts from one client, answer 429 until the window passes.

With Redis configured, the failures are counted there, shared by every worker and replica (with a per-process
fallback while Redis cannot be reached); without Redis, each process counts on its own. Each attempt that ends
here (a failure, or a refusal by the limiter) is one audit record.
"""

from __future__ import annotations

import ipaddress
import math
from typing import NamedTuple

from fastapi import HTTPException, Request, status

from c2casgiutils import audit, config, redis_utils
from c2casgiutils.auth._limiter import (
    FailureLimiter,
    FallbackFailureLimiter,
    LocalFailureLimiter,
    RedisFailureLimiter,
)

# One IPv6 client usually holds a whole /64 (SLAAC, privacy addresses): counting per address would give
# it 2**64 fresh counters.
_IPV6_CLIENT_PREFIX = 64


class _Plan(NamedTuple):
    """What the limiter is built from: a change of the settings builds a new one."""

    max_failures: int
    window: float
    redis: bool
    key_prefix: str
    redis_timeout: float
    metric_prefix: str


def _plan() -> _Plan:
    rate_limit = config.settings.auth.rate_limit
    return _Plan(
        max_failures=rate_limit.max_failures,
        window=rate_limit.window.total_seconds(),
        redis=redis_utils.is_configured(),
        key_prefix=rate_limit.redis_prefix,
        # One connection and one command: the layer's bound of a write.
        redis_timeout=redis_utils.write_bound(),
        metric_prefix=config.settings.prometheus.prefix,
    )


def build(plan: _Plan) -> FailureLimiter:
    """The limiter of ``plan``: Redis with a per-process fallback, or the process's own."""
    local = LocalFailureLimiter(plan.max_failures, plan.window)
    if not plan.redis:
        return local
    shared = RedisFailureLimiter(
        plan.max_failures, plan.window, key_prefix=plan.key_prefix, clients=redis_utils.get, timeout=plan.redis_timeout
    )
    return FallbackFailureLimiter(
        shared,
        local,
        describe_error=redis_utils.safe_error,
        is_unavailable=redis_utils.is_unavailable,
        metric_name=f"{plan.metric_prefix}auth_rate_limit_fallback_total",
    )


_LIMITER: tuple[_Plan, FailureLimiter] | None = None


def limiter() -> FailureLimiter:
    """The limiter of the current settings, built once and kept while they do not change."""
    global _LIMITER  # noqa: PLW0603 - one limiter per process
    plan = _plan()
    if _LIMITER is None or _LIMITER[0] != plan:
        _LIMITER = (plan, build(plan))
    return _LIMITER[1]


def reset() -> None:
    """Forget the failures this process holds and rebuild the limiter at its next use (tests)."""
    global _LIMITER  # noqa: PLW0603
    if _LIMITER is not None:
        _LIMITER[1].reset()
    _LIMITER = None


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


def _refused(request: Request, method: str, wait: float) -> HTTPException:
    """The 429 of a refused attempt, recorded; ``Retry-After`` is the seconds left, at most the window."""
    window = math.ceil(config.settings.auth.rate_limit.window.total_seconds())
    seconds = min(max(math.ceil(wait), 1), max(window, 1))
    audit.record(request, audit.Event.LOGIN, audit.Outcome.REFUSED, actor=None, method=method, retry_after=seconds)
    return HTTPException(
        status.HTTP_429_TOO_MANY_REQUESTS,
        detail=f"Too many failed authentication attempts from this client: retry in {seconds} s",
        headers={"Retry-After": str(seconds)},
    )


async def ensure_not_blocked(request: Request, method: str) -> None:
    """Raise 429 (one ``login refused`` record) when this client failed too often recently."""
    wait = await limiter().retry_after(client_key(request))
    if wait is not None:
        raise _refused(request, method, wait)


async def record_failure(request: Request, method: str, reason: str) -> None:
    """Count a failed attempt and record it (``login failure``; the caller answers 401).

    Raises 429 instead (``login refused``) when the limit was reached meanwhile: of a burst of concurrent wrong
    attempts, exactly ``max_failures`` are failures, the others are refused.
    """
    wait = await limiter().add_failure(client_key(request))
    if wait is not None:
        raise _refused(request, method, wait)
    audit.record(request, audit.Event.LOGIN, audit.Outcome.FAILURE, actor=None, method=method, reason=reason)
