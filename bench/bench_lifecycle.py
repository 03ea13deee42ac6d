"""What the drain costs a request: ``lifecycle.DrainMiddleware`` around a FastAPI hello route, µs per request.

Two measures, each comparing stacks in one run with alternating rounds (best and median of the rounds):

- in-process through uvicorn's real HTTP protocol (``uvicorn_inproc.py``, one keep-alive connection, one core):
  bare FastAPI against the same app with ``DrainMiddleware`` while the process serves normally, the cost every
  request pays;
- the middleware alone, called directly around a minimal ASGI app: not draining, and draining (the answer's
  headers are copied and ``Connection: close`` added), the cost during the drain only.

    .venv/bin/python bench/bench_lifecycle.py [--rounds 15] [--requests 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from c2casgiutils.lifecycle import DrainMiddleware
from c2casgiutils.lifecycle._drain import ProcessDrain

sys.path.insert(0, str(Path(__file__).parent))

REQUEST = b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"


def _hello_app(drain: ProcessDrain | None) -> FastAPI:
    app = FastAPI()

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    if drain is not None:
        app.add_middleware(DrainMiddleware, drain=drain)
    return app


def inproc(rounds: int, requests: int) -> dict[str, list[float]]:
    """µs per request of bare FastAPI and FastAPI + DrainMiddleware (not draining), through uvicorn."""
    from uvicorn_inproc import alternating_rounds

    apps = {"bare": _hello_app(None), "drain": _hello_app(ProcessDrain())}
    return alternating_rounds(apps, REQUEST, rounds, requests)


def micro(rounds: int, calls: int) -> dict[str, list[float]]:
    """µs per call of the middleware alone, around an app that answers with two headers."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")],
            }
        )
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        del message

    draining = ProcessDrain()
    draining.draining = True
    stacks = {
        "bare": app,
        "not draining": DrainMiddleware(app, drain=ProcessDrain()),
        "draining": DrainMiddleware(app, drain=draining),
    }
    scope = {"type": "http", "path": "/", "headers": []}

    async def run(stack: Any) -> float:
        start = time.perf_counter()
        for _ in range(calls):
            await stack(scope, receive, send)
        return (time.perf_counter() - start) / calls * 1e6

    async def measure() -> dict[str, list[float]]:
        samples: dict[str, list[float]] = {name: [] for name in stacks}
        names = list(stacks)
        for index in range(rounds):
            for name in names if index % 2 == 0 else names[::-1]:
                samples[name].append(await run(stacks[name]))
        return samples

    return asyncio.run(measure())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--requests", type=int, default=3000, help="requests per stack and round (in-process)")
    parser.add_argument("--calls", type=int, default=20000, help="calls per stack and round (middleware alone)")
    arguments = parser.parse_args()

    served = inproc(arguments.rounds, arguments.requests)
    bare = min(served["bare"])
    print(
        f"uvicorn's httptools protocol in one process, {arguments.rounds} alternating rounds of "
        f"{arguments.requests} requests"
    )
    print("| stack | best µs | median µs | extra µs over bare (best) |")
    print("|---|---|---|---|")
    for name, values in served.items():
        print(f"| {name} | {min(values):.1f} | {statistics.median(values):.1f} | {min(values) - bare:+.2f} |")

    alone = micro(arguments.rounds, arguments.calls)
    bare = min(alone["bare"])
    print(f"\nThe middleware alone, {arguments.rounds} alternating rounds of {arguments.calls} calls")
    print("| stack | best µs | median µs | extra µs over the bare app (best) |")
    print("|---|---|---|---|")
    for name, values in alone.items():
        print(f"| {name} | {min(values):.2f} | {statistics.median(values):.2f} | {min(values) - bare:+.2f} |")


if __name__ == "__main__":
    main()
