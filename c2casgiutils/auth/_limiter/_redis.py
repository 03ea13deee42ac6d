"""The failed-attempt limiter shared by every process through Redis: one Lua script, on Redis' own clock.

Each client has a sorted set of its counted failures (score: the Redis server's time in microseconds). One
script trims the failures older than the window, counts the rest, adds the new failure only while the count
is below the limit, renews the key's expiry, and answers how long the client must wait: atomic (Redis runs a
script alone), so a burst of concurrent attempts on any number of processes never counts more than the limit,
and on one clock (``TIME``), so the clocks of the replicas do not matter.

Why not the ``limits`` library: its Redis moving window stamps entries with the caller's ``time.time()`` (the
replicas' clocks), its windows are whole seconds, its Sentinel storage builds its own clients from a URI, and
answering "counted, else how long to wait" takes it two calls. See docs/auth.md.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING

from c2casgiutils.auth._limiter._base import FailureLimiter

if TYPE_CHECKING:
    from c2casgiutils.redis_utils import RedisClients

_MICROSECONDS = 1_000_000

SCRIPT = """
-- KEYS[1]: the client's failures; ARGV: window (us), max failures, "1" to count one / "0" to look, unique id
-- Returns {1 if counted else 0, failures in the window, microseconds to wait (-1: none)}
if redis.replicate_commands then redis.replicate_commands() end  -- TIME before writes, Redis < 5
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local counted = 0
if ARGV[3] == '1' and count < limit then
  redis.call('ZADD', KEYS[1], now, time[1] .. '.' .. time[2] .. ':' .. ARGV[4])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
  count = count + 1
  counted = 1
end
local wait = -1
if count >= limit then
  -- The failure whose departure from the window leaves room for one more.
  local blocking = redis.call('ZRANGE', KEYS[1], count - limit, count - limit, 'WITHSCORES')
  wait = tonumber(blocking[2]) + window - now
end
return {counted, count, wait}
"""


class RedisFailureLimiter(FailureLimiter):
    """Failures counted in Redis, shared by every worker and replica using the same Redis and ``key_prefix``.

    ``clients`` gives the Redis clients of the running event loop (``redis_utils.get``); every call is bounded
    by ``timeout`` seconds and raises when Redis cannot answer within it.
    """

    def __init__(
        self,
        max_failures: int,
        window: float,
        *,
        key_prefix: str,
        clients: Callable[[], RedisClients | None],
        timeout: float,
    ) -> None:
        super().__init__(max_failures, window)
        self.key_prefix = key_prefix
        self._clients = clients
        self.timeout = timeout

    async def _run(self, client: str, count: bool) -> tuple[bool, float | None]:
        clients = self._clients()
        if clients is None:
            raise RuntimeError("Redis is not configured")
        script = clients.master.register_script(SCRIPT)  # evalsha, loading the script on a new master
        # Bounded: a Redis that accepts connections and never answers must not hold a login longer than this.
        async with asyncio.timeout(self.timeout):
            counted, _, wait = await script(
                keys=[self.key_prefix + client],
                args=[round(self.window * _MICROSECONDS), self.max_failures, int(count), secrets.token_hex(8)],
            )
        return bool(counted), None if int(wait) < 0 else int(wait) / _MICROSECONDS

    async def retry_after(self, client: str) -> float | None:
        _, wait = await self._run(client, count=False)
        return wait

    async def add_failure(self, client: str) -> float | None:
        counted, wait = await self._run(client, count=True)
        return None if counted else wait
