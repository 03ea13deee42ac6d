"""Health check benchmark: concurrency and the timeout bound, through the real /c2c endpoint.

Run from the repository root:  .venv/bin/python bench/bench_health.py

1. 10 checks that each take 100 ms: the endpoint answers in about 100 ms (concurrent), not 1 s.
2. Redis replaced by a black hole (accepts, never answers) with a 1 s check timeout and a 30 s socket
   timeout: the endpoint answers in about 1 s with a `timeout` payload.
3. 50 concurrent requests on a 100 ms check with cache_ttl: how many times the backend is hit.

The app is called in-process through httpx's ASGI transport (no network), so the figures measure
the health check machinery, not a web server.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import statistics
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from fastapi import FastAPI

import c2casgiutils
from c2casgiutils import config, health_checks, redis_utils

ROUNDS = 20


class Sleep(health_checks.Check):
    """A check that takes ``delay`` seconds, counting its runs."""

    def __init__(self, delay: float, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.delay = delay
        self.runs = 0

    async def check(self) -> health_checks.Result:
        self.runs += 1
        await asyncio.sleep(self.delay)
        return health_checks.Result()


class BlackHole:
    """Accepts TCP connections on 127.0.0.1 and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.kept: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.kept.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        for connection in self.kept:
            connection.close()
        self.sock.close()


def _client() -> httpx.AsyncClient:
    main = FastAPI()
    main.mount("/c2c", c2casgiutils.app)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=main), base_url="http://bench", timeout=60)


async def _timed_get(http: httpx.AsyncClient, url: str) -> tuple[float, httpx.Response]:
    start = time.perf_counter()
    response = await http.get(url)
    return time.perf_counter() - start, response


async def bench_concurrency() -> None:
    factory = health_checks.FACTORY
    factory.clear()
    for index in range(10):
        factory.add(Sleep(0.1, name=f"sleep{index}", tags=["bench"]))
    async with _client() as http:
        await http.get("/c2c/health_checks")  # warm-up
        durations = []
        for _ in range(ROUNDS):
            elapsed, response = await _timed_get(http, "/c2c/health_checks")
            assert response.status_code == 200
            assert len(response.json()["entities"]) == 10
            durations.append(elapsed)
    median = statistics.median(durations)
    print(f"10 checks x 100 ms, {ROUNDS} requests: median {median * 1000:.1f} ms, max {max(durations) * 1000:.1f} ms,")
    print(f"  {1.0 / median:.1f}x faster than running them one after the other (1000 ms)")
    factory.clear()


async def bench_black_hole() -> None:
    hole = BlackHole()
    factory = health_checks.FACTORY
    factory.clear()
    settings = config.settings
    settings.redis.url = f"redis://127.0.0.1:{hole.port}/0"
    settings.redis.socket_timeout = timedelta(seconds=30)
    factory.add(health_checks.Redis(tags=["liveness"], timeout=1.0))
    factory.add(Sleep(0.1, name="fast"))
    try:
        async with _client() as http:
            durations = []
            for _ in range(5):
                elapsed, response = await _timed_get(http, "/c2c/health_checks")
                redis_entity = response.json()["entities"][0]
                assert response.status_code == 500
                assert redis_entity["payload"]["error"] == "timeout"
                durations.append(elapsed)
                await redis_utils.cleanup()
    finally:
        hole.close()
        settings.redis.url = None
        factory.clear()
    print(
        f"black-holed Redis, check timeout 1000 ms (socket timeout 30 s), 5 requests: "
        f"median {statistics.median(durations) * 1000:.1f} ms, max {max(durations) * 1000:.1f} ms"
    )


async def bench_cache() -> None:
    factory = health_checks.FACTORY
    factory.clear()
    cached = Sleep(0.1, name="cached", cache_ttl=30)
    uncached = Sleep(0.1, name="uncached")
    factory.add(cached)
    factory.add(uncached)
    async with _client() as http:
        start = time.perf_counter()
        await asyncio.gather(*(http.get("/c2c/health_checks?name=cached") for _ in range(50)))
        cached_elapsed = time.perf_counter() - start
        start = time.perf_counter()
        await asyncio.gather(*(http.get("/c2c/health_checks?name=uncached") for _ in range(50)))
        uncached_elapsed = time.perf_counter() - start
    factory.clear()
    print(
        f"50 concurrent requests on a 100 ms check: with cache_ttl {cached.runs} backend run(s) "
        f"in {cached_elapsed * 1000:.0f} ms; without {uncached.runs} runs in {uncached_elapsed * 1000:.0f} ms"
    )


async def main() -> None:
    logging.getLogger("c2casgiutils").setLevel(logging.ERROR)  # the timeouts are expected here
    config.settings.redis.sentinels = None
    await bench_concurrency()
    await bench_black_hole()
    await bench_cache()


if __name__ == "__main__":
    asyncio.run(main())
