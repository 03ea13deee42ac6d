"""Cost of the request metrics: c2casgiutils' PrometheusMiddleware vs prometheus-fastapi-instrumentator.

Both stacks and a bare app serve ``GET /api/hello`` (an included router, with the ``/c2c`` sub-app mounted
and a few other routes, as in the scaffold) through uvicorn's real HTTP protocol in one process
(``uvicorn_inproc.py``); rounds alternate the stacks. Single-process mode and prometheus_client's
multiprocess mode (values in mmapped files) each run in a fresh interpreter, since prometheus_client picks
its mode when first imported.

    .venv/bin/python bench/bench_metrics.py [--rounds 7] [--requests 3000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

STACKS = ("bare", "instrumentator", "c2c")
REQUEST = b"GET /api/hello HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"


def build(stack: str) -> Any:
    from fastapi import APIRouter, FastAPI
    from prometheus_client import CollectorRegistry

    import c2casgiutils
    from c2casgiutils import prometheus

    app = FastAPI()
    app.mount("/c2c", c2casgiutils.app)
    router = APIRouter(prefix="/api")

    @router.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item": item_id}

    @router.get("/processes")
    async def processes() -> list[int]:
        return []

    @router.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    app.include_router(router)
    if stack == "instrumentator":
        from prometheus_fastapi_instrumentator import Instrumentator

        Instrumentator(should_instrument_requests_inprogress=True).instrument(app)
    elif stack == "c2c":
        # Its own registry: the instrumentator's series of the same names are in the default one.
        app.add_middleware(prometheus.PrometheusMiddleware, registry=CollectorRegistry())
    return app


def measure(rounds: int, requests: int) -> dict[str, list[float]]:
    from uvicorn_inproc import alternating_rounds

    # CPU time of this thread: the time other jobs of a shared machine hold the core is not counted.
    return alternating_rounds({stack: build(stack) for stack in STACKS}, REQUEST, rounds, requests, time.thread_time)


def child(mode: str, rounds: int, requests: int) -> None:
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    os.environ["C2C__PROMETHEUS__PORT"] = ""
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as directory:
        if mode == "multi":
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        samples = measure(rounds, requests)
        import prometheus_client.values

        value_class = prometheus_client.values.ValueClass.__name__
    expected = "MmapedValue" if mode == "multi" else "MutexValue"
    if value_class != expected:
        raise RuntimeError(f"{mode}: prometheus_client runs with {value_class}")
    print(json.dumps(samples))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--child", choices=("single", "multi"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        child(arguments.child, arguments.rounds, arguments.requests)
        return
    print(
        f"uvicorn's httptools protocol in one process, {arguments.rounds} alternating rounds of "
        f"{arguments.requests} requests of GET /api/hello; CPU µs per request (best round; median in brackets)"
    )
    print(
        "| mode | bare | instrumentator | c2c PrometheusMiddleware | extra: instrumentator | extra: c2c "
        "| c2c / instrumentator |"
    )
    print("|---|---|---|---|---|---|---|")
    for mode in ("single", "multi"):
        command = [
            sys.executable,
            __file__,
            "--child",
            mode,
            "--rounds",
            str(arguments.rounds),
            "--requests",
            str(arguments.requests),
        ]
        output = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=True).stdout
        samples: dict[str, list[float]] = json.loads(output.splitlines()[-1])
        best = {stack: min(values) for stack, values in samples.items()}
        median = {stack: statistics.median(values) for stack, values in samples.items()}
        extra_instrumentator = best["instrumentator"] - best["bare"]
        extra_c2c = best["c2c"] - best["bare"]
        print(
            f"| {mode} | {best['bare']:.1f} ({median['bare']:.1f}) | {best['instrumentator']:.1f} "
            f"({median['instrumentator']:.1f}) | {best['c2c']:.1f} ({median['c2c']:.1f}) | "
            f"{extra_instrumentator:+.1f} | {extra_c2c:+.1f} | {extra_c2c / extra_instrumentator:.2f} |"
        )


if __name__ == "__main__":
    main()
