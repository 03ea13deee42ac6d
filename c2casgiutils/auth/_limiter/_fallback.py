"""A shared limiter (Redis) that falls back to the process's own limiter while it cannot be reached.

The fallback never leaves the limit off and never turns an attempt into a 500: while Redis is down or failing
over, each process counts on its own (as without Redis), which bounds an attacker to ``max_failures`` per
process instead of per fleet. Each outage is logged once (a warning when it starts, an info line when the
shared limit answers again) and every decision the fallback takes is counted in the metric
``{prefix}auth_rate_limit_fallback_total``.

The process's own limiter also counts every failure while Redis answers, so that when Redis goes away the
failures this process has seen still count.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from c2casgiutils import _counters
from c2casgiutils.auth._limiter._base import FailureLimiter

_LOGGER = logging.getLogger("c2casgiutils.auth")

RETRY_SHARED_AFTER = 1.0
"""Seconds between two tries of the shared limiter during an outage: a login does not wait for a connection
timeout each time, and the shared limit is back within a second of Redis' return."""


class FallbackFailureLimiter(FailureLimiter):
    """``shared`` while it answers, else ``local``.

    ``describe_error`` gives a log-safe text of a failure; ``is_unavailable`` tells an outage (Redis cannot be
    reached) from a bug, whose traceback is logged too (the fallback answers either way).
    """

    def __init__(
        self,
        shared: FailureLimiter,
        local: FailureLimiter,
        *,
        describe_error: Callable[[BaseException], str],
        is_unavailable: Callable[[BaseException], bool],
        metric_name: str,
        retry_shared_after: float = RETRY_SHARED_AFTER,
    ) -> None:
        super().__init__(shared.max_failures, shared.window)
        self.shared = shared
        self.local = local
        self._describe_error = describe_error
        self._is_unavailable = is_unavailable
        self._metric_name = metric_name
        self._retry_shared_after = retry_shared_after
        self._down_since: float | None = None  # monotonic time of the first failure of the current outage
        self._next_try = 0.0

    @property
    def in_fallback(self) -> bool:
        """Whether the last decision was the fallback's (an outage is under way)."""
        return self._down_since is not None

    async def _shared(self, call: Callable[[], Awaitable[float | None]]) -> tuple[bool, float | None]:
        """(True, answer) from the shared limiter, or (False, None) when it cannot answer now."""
        now = time.monotonic()
        if self._down_since is not None and now < self._next_try:
            return False, None
        try:
            answer = await call()
        except Exception as error:  # whatever the cause, the fallback answers: never a 500, never no limit
            self._next_try = time.monotonic() + self._retry_shared_after
            if self._down_since is None:
                self._down_since = now
                _LOGGER.warning(
                    "The shared failed-login limit is unavailable (%s): this process counts failed logins on its own "
                    "while Redis cannot be reached",
                    self._describe_error(error),
                    exc_info=not self._is_unavailable(error),
                )
            return False, None
        if self._down_since is not None:
            _LOGGER.info(
                "The shared failed-login limit answers again after %.1f s on this process's own count",
                now - self._down_since,
            )
            self._down_since = None
        return True, answer

    def _count_fallback(self) -> None:
        _counters.increment(
            self._metric_name,
            "Failed-login limiter decisions taken by the per-process fallback while Redis was unavailable",
        )

    async def retry_after(self, client: str) -> float | None:
        answered, wait = await self._shared(lambda: self.shared.retry_after(client))
        if answered:
            return wait
        self._count_fallback()
        return await self.local.retry_after(client)

    async def add_failure(self, client: str) -> float | None:
        local_wait = await self.local.add_failure(client)
        answered, wait = await self._shared(lambda: self.shared.add_failure(client))
        if answered:
            return wait
        self._count_fallback()
        return local_wait

    def reset(self) -> None:
        self.shared.reset()
        self.local.reset()
        self._down_since = None
        self._next_try = 0.0
