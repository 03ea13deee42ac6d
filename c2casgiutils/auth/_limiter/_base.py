"""The interface of a failed-attempt limiter: count a failure unless the limit is reached, tell how long to wait."""

from __future__ import annotations

import abc


class FailureLimiter(abc.ABC):
    """At most ``max_failures`` failed attempts per client within a sliding window of ``window`` seconds.

    The window runs from the failures themselves: a failure counts for ``window`` seconds after it happened,
    so attempts close together are never split by a clock boundary. Once ``max_failures`` are counted, the
    client waits until the oldest of them leaves the window.
    """

    def __init__(self, max_failures: int, window: float) -> None:
        if max_failures < 1 or window <= 0:
            raise ValueError(f"expected max_failures >= 1 and a positive window, got {max_failures} and {window}")
        self.max_failures = max_failures
        self.window = window

    @abc.abstractmethod
    async def retry_after(self, client: str) -> float | None:
        """Seconds until ``client`` may try again (``max_failures`` failures in the window), or None: it may."""

    @abc.abstractmethod
    async def add_failure(self, client: str) -> float | None:
        """Count one failure of ``client`` unless the limit is reached: None when counted, else the seconds to wait.

        Atomic: of N concurrent calls for one client, no more are counted than the limit leaves room for, so
        exactly ``max_failures`` failures are ever answered as such. Raises when its storage cannot be reached:
        the caller decides what to do then.
        """

    def reset(self) -> None:  # noqa: B027 - optional: a shared storage has nothing per process to forget
        """Forget what this process holds (tests)."""
