"""Does labelling a request by its route template cost more in a larger application? Ours vs two peers.

FastAPI applications with 10, 50 and 200 routes (``/c2c`` mounted, the other routes ``/resource<i>/{item_id}``,
then ``/items/{item_id}`` last, so finding it by walking the routes costs the most), each served bare, with
c2casgiutils' ``PrometheusMiddleware``, with prometheus-fastapi-instrumentator's defaults and with
starlette-exporter's ``PrometheusMiddleware``, through uvicorn's HTTP protocol in one process
(``uvicorn_inproc.py``). Two kinds of traffic:

- ``cached``: ``GET /items/1`` every time;
- ``unique``: ``GET /items/<n>`` with a new ``n`` on every request, as REST traffic with ids looks to a
  per-path cache.

Rounds alternate the stacks (order reversed every other round); the figure of a stack is its best round and
"extra" is that minus the bare application's best round of the same run.

    .venv/bin/python bench/bench_routes.py [--rounds 21] [--requests 2000] [--routes 10,50,200]
    .venv/bin/python bench/bench_routes.py --instructions [--requests 500]   # needs valgrind

Time is the CPU time of the process's thread (``--wall``: the wall clock). ``--instructions`` counts the
instructions a request takes instead (valgrind's callgrind, ours and bare only): the same figure on every run.

The peers are the ``bench`` dependency group of pyproject.toml (locked): ``./scripts/bench-env`` installs them
into ``.venv`` (the instrumentator comes with the ``prometheus`` extra).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import os
import time
from typing import Any

STACKS = ("bare", "c2c", "instrumentator", "starlette_exporter")
TRAFFIC = ("cached", "unique")


def build(stack: str, routes: int) -> Any:
    from fastapi import FastAPI
    from prometheus_client import CollectorRegistry

    import c2casgiutils
    from c2casgiutils import prometheus

    app = FastAPI()
    app.mount("/c2c", c2casgiutils.app)

    def resource(index: int) -> Any:
        async def read(item_id: int) -> dict[str, int]:
            return {"resource": index, "item": item_id}

        return read

    for index in range(routes - 2):  # the mount and /items/{item_id} make the count
        app.get(f"/resource{index}/{{item_id}}")(resource(index))

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item": item_id}

    # Each application has a registry of its own (starlette-exporter: a prefix of its own in the default one).
    if stack == "c2c":
        app.add_middleware(prometheus.PrometheusMiddleware, registry=CollectorRegistry())
    elif stack == "instrumentator":
        from prometheus_fastapi_instrumentator import Instrumentator

        # Its in-progress gauge always goes to the default registry: a name of its own per application.
        Instrumentator(
            should_instrument_requests_inprogress=True,
            inprogress_name=f"http_requests_inprogress_{routes}",
            registry=CollectorRegistry(),
        ).instrument(app)
    elif stack == "starlette_exporter":
        from starlette_exporter import PrometheusMiddleware

        app.add_middleware(PrometheusMiddleware, app_name=f"bench{routes}", prefix=f"bench{routes}")
    return app


def _request(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n".encode()


def measure(
    route_counts: list[int], rounds: int, requests: int, wall: bool = False
) -> dict[tuple[int, str, str], list[float]]:
    """µs per request of every (routes, traffic, stack), one figure per round: CPU time of this thread (wall time
    with ``wall``)."""
    import uvloop
    from uvicorn_inproc import InProcessServer

    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {0})
    ids = itertools.count(1_000_000)  # every "unique" request of the run has a path no request had before
    clock = time.perf_counter if wall else time.thread_time

    async def run() -> dict[tuple[int, str, str], list[float]]:
        loop = asyncio.get_running_loop()
        servers = {
            (routes, stack): InProcessServer(build(stack, routes), loop, clock)
            for routes in route_counts
            for stack in STACKS
        }
        cached = _request("/items/1")
        for server in servers.values():
            await server.run(cached, 500)  # warm up
            await server.run([_request(f"/items/{next(ids)}") for _ in range(500)], 500)
        gc.collect()
        gc.freeze()
        samples: dict[tuple[int, str, str], list[float]] = {}
        for round_index in range(rounds):
            order = list(servers.items()) if round_index % 2 == 0 else list(servers.items())[::-1]
            for (routes, stack), server in order:
                for traffic in TRAFFIC:
                    if traffic == "cached":
                        batch: bytes | list[bytes] = cached
                    else:
                        batch = [_request(f"/items/{next(ids)}") for _ in range(requests)]
                    figure = await server.run(batch, requests)
                    samples.setdefault((routes, traffic, stack), []).append(figure)
        for server in servers.values():
            server.check_ok()
        return samples

    return uvloop.run(run())


def count_child(routes: int, stack: str, traffic: str, requests: int) -> None:
    """Serve ``requests`` requests where valgrind counts (see ``uvicorn_inproc.instructions``)."""
    import uvloop
    from uvicorn_inproc import InProcessServer, counted

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    server = InProcessServer(build(stack, routes), loop)
    ids = itertools.count(1_000_000)

    def batch(count: int) -> list[bytes]:
        return [_request("/items/1" if traffic == "cached" else f"/items/{next(ids)}") for _ in range(count)]

    loop.run_until_complete(server.run(batch(300), 300))  # warm up, not counted
    measured = batch(requests)
    counted(lambda: loop.run_until_complete(server.run(measured, requests)))
    server.check_ok()


def instructions(route_counts: list[int], requests: int) -> None:
    """Instructions per request of ours and bare, at every size and traffic (two children at a time)."""
    import sys
    from concurrent.futures import ThreadPoolExecutor

    from uvicorn_inproc import instructions as count

    keys = [(routes, traffic, stack) for routes in route_counts for traffic in TRAFFIC for stack in ("bare", "c2c")]

    def one(key: tuple[int, str, str]) -> float:
        routes, traffic, stack = key
        command = [sys.executable, __file__, "--count-child", f"{routes}:{stack}:{traffic}"]
        return count([*command, "--requests", str(requests)], requests)

    with ThreadPoolExecutor(max_workers=2) as pool:
        counts = dict(zip(keys, pool.map(one, keys), strict=True))
    print(
        f"instructions per request (callgrind, {requests} requests after 300 of warm-up), PrometheusMiddleware's "
        "extra over the same app without metrics"
    )
    print("| routes | traffic | bare k instructions | c2c extra k instructions |")
    print("|---|---|---|---|")
    for routes in route_counts:
        for traffic in TRAFFIC:
            bare = counts[(routes, traffic, "bare")]
            extra = counts[(routes, traffic, "c2c")] - bare
            print(f"| {routes} | {traffic} | {bare / 1000:.1f} | {extra / 1000:+.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--routes", default="10,50,200", help="comma list of route counts")
    parser.add_argument("--wall", action="store_true", help="wall-clock time instead of this thread's CPU time")
    parser.add_argument("--instructions", action="store_true", help="count instructions per request (valgrind)")
    parser.add_argument("--count-child", metavar="ROUTES:STACK:TRAFFIC", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    route_counts = [int(count) for count in arguments.routes.split(",")]
    os.environ["C2C__PROMETHEUS__PORT"] = ""
    if arguments.count_child:
        routes, stack, traffic = arguments.count_child.split(":")
        count_child(int(routes), stack, traffic, arguments.requests)
        return
    if arguments.instructions:
        instructions(route_counts, arguments.requests)
        return
    samples = measure(route_counts, arguments.rounds, arguments.requests, arguments.wall)
    best = {key: min(values) for key, values in samples.items()}
    print(
        f"uvicorn's httptools protocol in one process, best of {arguments.rounds} alternating rounds of "
        f"{arguments.requests} requests; {'wall-clock' if arguments.wall else 'CPU'} µs added per request over the "
        "same app without metrics (bare: absolute µs)"
    )
    print("| routes | traffic | bare µs | c2c | instrumentator | starlette-exporter |")
    print("|---|---|---|---|---|---|")
    for routes in route_counts:
        for traffic in TRAFFIC:
            bare = best[(routes, traffic, "bare")]
            extras = [best[(routes, traffic, stack)] - bare for stack in STACKS[1:]]
            print(f"| {routes} | {traffic} | {bare:.1f} | " + " | ".join(f"{extra:+.1f}" for extra in extras) + " |")


if __name__ == "__main__":
    main()
