"""The failed-attempt limiter of one process: failure times in memory, bounded in clients and entries."""

from __future__ import annotations

import time
from collections import OrderedDict, deque

from c2casgiutils.auth._limiter._base import FailureLimiter

MAX_CLIENTS = 10_000
"""Clients remembered at most; the least recently failing ones are forgotten first (memory stays bounded)."""


class LocalFailureLimiter(FailureLimiter):
    """The failures this process has seen, on its monotonic clock (each worker counts on its own)."""

    def __init__(self, max_failures: int, window: float, max_clients: int = MAX_CLIENTS) -> None:
        super().__init__(max_failures, window)
        self.max_clients = max_clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, client: str, now: float) -> deque[float] | None:
        failures = self._failures.get(client)
        if failures is None:
            return None
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[client]
            return None
        return failures

    def _wait(self, failures: deque[float] | None, now: float) -> float | None:
        if failures is None or len(failures) < self.max_failures:
            return None
        # At most max_failures are kept: the first one is the one whose departure lets the client in.
        return max(failures[0] + self.window - now, 0.0)

    async def retry_after(self, client: str) -> float | None:
        now = time.monotonic()
        return self._wait(self._recent(client, now), now)

    async def add_failure(self, client: str) -> float | None:
        # No await between the check and the append: atomic for the tasks of this process's event loop.
        now = time.monotonic()
        failures = self._recent(client, now)
        wait = self._wait(failures, now)
        if wait is not None:
            return wait
        if failures is None:
            failures = self._failures[client] = deque()
        failures.append(now)
        self._failures.move_to_end(client)
        while len(self._failures) > self.max_clients:
            self._failures.popitem(last=False)
        return None

    def clients(self) -> int:
        """How many clients are remembered (memory bound)."""
        return len(self._failures)

    def reset(self) -> None:
        self._failures.clear()
