"""Master lookup through Sentinel with a dead Sentinel first in C2C__REDIS__SENTINELS.

Starts a redis-server and one redis-sentinel on 127.0.0.1, then measures the first command of a fresh
master client (Sentinel lookup + connection + PING) with the list ``dead,healthy``, for three kinds of
dead Sentinel: a refused port, an unreachable address (TCP handshake never completes) and a black hole
(accepts, never answers). With the package's clients (``redis_utils.build()``, default timeouts: connect
2 s, socket 5 s) and with Sentinel clients given only the same timeouts as ``sentinel_kwargs``, left to
redis-py's default retries. The second lookup, once the healthy Sentinel is first in
redis-py's list, is measured too.

    .venv/bin/python bench/bench_sentinel.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis.asyncio.sentinel  # noqa: E402

from c2casgiutils import config, redis_utils  # noqa: E402
from tests.redis_processes import RedisProcess, Unreachable, redis_binary  # noqa: E402
from tests.servers import BlackHole, RedisServer, free_port  # noqa: E402

SERVICE = "bench-master"


def start_sentinel(master_port: int, directory: str) -> RedisProcess:
    port = free_port()
    conf = Path(directory) / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {directory}\nsentinel monitor {SERVICE} 127.0.0.1 {master_port} 1\n",
        encoding="utf-8",
    )
    sentinel = RedisProcess([redis_binary(), str(conf), "--sentinel"], port)
    sentinel.start()
    return sentinel


def old_clients(sentinels: list[tuple[str, int]]) -> Any:
    """A Sentinel given only the timeouts: redis-py's default retries and backoff on every Sentinel."""
    redis_settings = config.settings.redis
    timeouts = {
        "socket_timeout": redis_settings.socket_timeout.total_seconds(),
        "socket_connect_timeout": redis_settings.connect_timeout.total_seconds(),
    }
    return redis.asyncio.sentinel.Sentinel(sentinels, sentinel_kwargs=timeouts, **timeouts)


async def measure(kind: str, dead: str, healthy: str, implementation: str) -> tuple[float, float]:
    config.settings.redis.sentinels = f"{dead},{healthy}"
    if implementation == "package":
        clients = redis_utils.build()
        assert clients is not None
        assert clients.sentinel is not None
        sentinel, master = clients.sentinel, clients.master
    else:
        sentinel = old_clients(redis_utils.parse_sentinels(config.settings.redis.sentinels))
        master = sentinel.master_for(SERVICE)
    try:
        started = time.perf_counter()
        await master.ping()
        first = time.perf_counter() - started
        started = time.perf_counter()
        await sentinel.discover_master(SERVICE)
        second = time.perf_counter() - started
    finally:
        await master.aclose()
        for client in sentinel.sentinels:
            await client.aclose()
    del kind
    return first, second


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    master = RedisServer()
    master.start()
    directory = tempfile.mkdtemp(prefix="c2c-bench-sentinel-")
    sentinel = start_sentinel(master.port, directory)
    config.settings.redis.url = None
    config.settings.redis.servicename = SERVICE
    redis_settings = config.settings.redis
    print(
        f"# {time.strftime('%Y-%m-%d')} Python {platform.python_version()}, redis-py {redis.__version__}, "
        f"connect_timeout {redis_settings.connect_timeout.total_seconds()} s, "
        f"socket_timeout {redis_settings.socket_timeout.total_seconds()} s, retries {redis_settings.retries}"
    )
    print("| dead Sentinel first | clients | first command (lookup + connect + PING), median | next lookup |")
    print("|---|---|---|---|")
    healthy = f"127.0.0.1:{sentinel.port}"
    try:
        for kind in ("refused", "unreachable", "black hole"):
            for implementation in ("package", "redis-py default retries"):
                rounds = args.rounds if implementation == "package" else 1
                firsts, seconds = [], []
                for _ in range(rounds):
                    hole: Unreachable | BlackHole | None = None
                    if kind == "unreachable":
                        hole = Unreachable()
                    elif kind == "black hole":
                        hole = BlackHole()
                    dead = f"127.0.0.1:{hole.port if hole else free_port()}"
                    try:
                        first, second = await measure(kind, dead, healthy, implementation)
                    finally:
                        if hole is not None:
                            hole.close()
                    firsts.append(first)
                    seconds.append(second)
                print(
                    f"| {kind} | {implementation} | {statistics.median(firsts):.2f} s | "
                    f"{statistics.median(seconds) * 1000:.1f} ms |"
                )
    finally:
        sentinel.stop()
        master.close()


if __name__ == "__main__":
    asyncio.run(main())
