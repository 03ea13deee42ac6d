"""Cost of the request-id and error middlewares, of the JSON log formatter, and of the debug collectors.

Everything runs in this process, driving the ASGI apps directly (no network), so the figures isolate
the code under test. Stacks alternate within each round; a figure is the median of the rounds and
ratios compare stacks measured in the same run.

    .venv/bin/python bench/bench_request_id.py [--rounds 7] [--requests 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import statistics
import time
from typing import Any

from fastapi import FastAPI

from c2casgiutils.errors import ErrorResponseMiddleware
from c2casgiutils.logs import JsonFormatter, RequestIdFilter
from c2casgiutils.request_id import RequestIdMiddleware
from c2casgiutils.tools import debug


def _hello_app() -> FastAPI:
    app = FastAPI()

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    return app


def _stacks() -> dict[str, Any]:
    bare = _hello_app()
    request_id = _hello_app()
    request_id.add_middleware(RequestIdMiddleware)
    both = _hello_app()
    both.add_middleware(ErrorResponseMiddleware)
    both.add_middleware(RequestIdMiddleware)
    return {"bare": bare, "request_id": request_id, "request_id+errors": both}


async def _requests_per_second(app: Any, count: int) -> float:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/hello",
        "raw_path": b"/hello",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"bench"), (b"x-request-id", b"bench-request-0001")],
        "client": ("127.0.0.1", 1),
        "server": ("bench", 80),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        del message

    start = time.perf_counter()
    for _ in range(count):
        await app(dict(scope), receive, send)
    return count / (time.perf_counter() - start)


def _records_per_second(formatter: logging.Formatter, count: int) -> float:
    logger = logging.getLogger("bench")
    logger.propagate = False
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(formatter)
    handler.addFilter(RequestIdFilter())
    logger.handlers = [handler]
    logger.setLevel(logging.INFO)
    start = time.perf_counter()
    for number in range(count):
        logger.info("request %s handled in %.1f ms", number, 1.5)
    return count / (time.perf_counter() - start)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()

    stacks = _stacks()
    for app in stacks.values():  # warm up (builds the middleware stacks)
        await _requests_per_second(app, 200)
    results: dict[str, list[float]] = {name: [] for name in stacks}
    logs: dict[str, list[float]] = {"logging.Formatter": [], "JsonFormatter": []}
    for round_number in range(args.rounds):
        names = list(stacks) if round_number % 2 == 0 else list(reversed(stacks))
        for name in names:
            results[name].append(await _requests_per_second(stacks[name], args.requests))
        logs["logging.Formatter"].append(_records_per_second(logging.Formatter("%(asctime)s %(message)s"), 20_000))
        logs["JsonFormatter"].append(_records_per_second(JsonFormatter(), 20_000))

    bare = statistics.median(results["bare"])
    print(f"ASGI requests/s, median of {args.rounds} rounds of {args.requests} requests (in-process):")
    for name, values in results.items():
        median = statistics.median(values)
        print(f"  {name:<20} {median:>9.0f}/s  ratio to bare {median / bare:.3f}")
    plain = statistics.median(logs["logging.Formatter"])
    print("Log records/s (StreamHandler to memory, with RequestIdFilter):")
    for name, values in logs.items():
        median = statistics.median(values)
        print(f"  {name:<20} {median:>9.0f}/s  ratio to logging.Formatter {median / plain:.3f}")

    for name, collect in (("stacks", debug._local_stacks), ("memory", debug._local_memory)):
        timings = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            await collect()
            timings.append(time.perf_counter() - start)
        print(f"Collect {name} in this process: median {statistics.median(timings) * 1000:.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())
