"""A small in-process TTL cache that also merges concurrent loads of one key (one GitHub call, not N)."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class TTLCache(Generic[V]):
    """Values expire after their TTL; at most ``max_entries`` are kept (the oldest go first)."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._max_entries = max_entries
        self._entries: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()
        self._in_flight: dict[Hashable, asyncio.Future[V]] = {}

    def get(self, key: Hashable) -> tuple[bool, V | None]:
        """``(True, value)`` on a fresh hit, ``(False, None)`` otherwise."""
        entry = self._entries.get(key)
        if entry is None:
            return False, None
        expires_at, value = entry
        if expires_at <= time.monotonic():
            del self._entries[key]
            return False, None
        return True, value

    def set(self, key: Hashable, value: V, ttl_seconds: float) -> None:
        """Store a value for ``ttl_seconds`` (nothing is stored for a TTL of 0)."""
        if ttl_seconds <= 0:
            return
        self._entries[key] = (time.monotonic() + ttl_seconds, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def discard(self, key: Hashable) -> None:
        """Forget a key."""
        self._entries.pop(key, None)

    def clear(self) -> None:
        """Forget everything."""
        self._entries.clear()
        self._in_flight.clear()

    async def get_or_load(self, key: Hashable, ttl_seconds: float, loader: Callable[[], Awaitable[V]]) -> V:
        """The cached value, or the result of ``loader()``; concurrent callers share one load."""
        loop = asyncio.get_running_loop()
        while True:
            hit, value = self.get(key)
            if hit:
                return value  # type: ignore[return-value] # a hit always carries a V
            in_flight = self._in_flight.get(key)
            if in_flight is None or in_flight.get_loop() is not loop:
                break
            try:
                return await asyncio.shield(in_flight)
            except asyncio.CancelledError:
                if in_flight.cancelled():
                    continue  # the loading task was cancelled, not us: load again
                raise

        future: asyncio.Future[V] = loop.create_future()
        self._in_flight[key] = future
        try:
            result = await loader()
        except Exception as error:
            future.set_exception(error)
            future.exception()  # mark it retrieved: waiters, if any, get it from await
            raise
        except BaseException:
            future.cancel()
            raise
        finally:
            if self._in_flight.get(key) is future:
                del self._in_flight[key]
        self.set(key, result, ttl_seconds)
        future.set_result(result)
        return result
