"""What the scaffold's middleware stack costs per request, layer by layer, and beside the fastest peer of each layer.

The application is the scaffold's shape: FastAPI with the ``/c2c`` sub-app mounted and an ``/api`` router;
every stack serves ``GET /api/hello`` from the trusted proxy 127.0.0.1 (``X-Forwarded-For``, ``-Proto``,
``-Host``), through uvicorn's HTTP protocol in one process (``uvicorn_inproc.py``). The middlewares are added
as ``scaffold/{{cookiecutter.project_slug}}/.../main.py`` adds them, innermost first: the error handler,
``PrometheusMiddleware``, GZip, CORS, ``ArmorHeaderMiddleware``, TrustedHost, ``DrainMiddleware``,
``ForwardedHeadersMiddleware``, ``RequestIdMiddleware`` (proxy headers on, CORS origins and allowed hosts set, so
every layer is there). Stacks:

- ``bare``: no middleware; ``noop8``: eight layers that only call the next one;
- each layer alone (``errors``, ``metrics``, ``gzip``, ``cors``, ``armor``, ``trustedhost``, ``drain``,
  ``forwarded``, ``request_id``: request id and W3C trace context, as shipped), and its peers alone:
  ``errors:passthrough`` (a try/except around the app, the least an error handler does),
  ``metrics:instrumentator`` and ``metrics:starlette-exporter``, ``armor:floor`` (append the 11 default headers
  as a constant list) and ``armor:secure`` (secure's ``SecureASGIMiddleware``), ``request_id:asgi-correlation-id``
  (request ids only), ``forwarded:uvicorn`` (uvicorn's ``ProxyHeadersMiddleware``); ``request_id:no-trace`` is
  ``RequestIdMiddleware(tracing=False)`` (``C2C__TRACING__ENABLED=false``), so ``request_id`` minus it is the trace
  context;
- ``ours``: our six layers in the scaffold's order, nothing else; ``starlette``: GZip, CORS and TrustedHost
  only; ``scaffold``: the whole stack;
- floors (``floor_layers.py``): ``metrics:floor``, ``forwarded:floor`` and ``request_id:floor`` do the work their
  layer must do for this request, hard-coded for it; ``ours:floor`` and ``scaffold:floor`` are ``ours`` and
  ``scaffold`` with every layer at its floor (``armor:floor``; the error handler and the drain are at theirs
  already): the least any implementation of our six layers can cost;
- any ``layer+layer+...`` of the layers and peers above, innermost first (``metrics+armor``): a stack of one's own.

Rounds alternate the stacks (order reversed every other round); a stack's figure is its best round, "extra" is
that minus bare's best round of the same run. Time is the CPU time of the process's thread (``--wall``: the wall
clock), so the time other jobs of a shared machine hold the core is not counted.

``--paired`` runs many short rounds (400 of 100 requests) in a shuffled order instead; "extra" is the median of
each round's difference to bare's round. A neighbour that slows the machine for a moment slows both sides of a
difference, and the median drops the rounds it spoiled: on a shared machine the figure of a layer moves by a
few tenths of a µs from run to run, where the best of 21 rounds can move by several µs.

    .venv/bin/python bench/bench_stack.py [--rounds 21] [--requests 2000] [--stacks bare,ours,scaffold]
    .venv/bin/python bench/bench_stack.py --paired [--rounds 400] [--requests 100] [--stacks ...]
    .venv/bin/python bench/bench_stack.py --instructions [--requests 500]   # needs valgrind

``--instructions`` counts the machine instructions a request takes instead (valgrind's callgrind, counting only
while the measured requests run, in a child process per stack): slow (about half a minute per stack), but the
same figure on every run whatever else the machine does, so differences of a few hundred nanoseconds show. The
µs column converts them at the rate of bare's best timed round of the same run.

The peers are the ``bench`` dependency group of pyproject.toml (locked): ``./scripts/bench-env`` installs them
into ``.venv`` (the instrumentator comes with the ``prometheus`` extra).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

# The scaffold's order, innermost first (the order of its add_middleware calls).
OURS = ("errors", "metrics", "armor", "drain", "forwarded", "request_id")
STARLETTE = ("gzip", "cors", "trustedhost")
SCAFFOLD = ("errors", "metrics", "gzip", "cors", "armor", "trustedhost", "drain", "forwarded", "request_id")
PEERS = (
    "errors:passthrough",
    "metrics:instrumentator",
    "metrics:starlette-exporter",
    "armor:floor",
    "armor:secure",
    "request_id:asgi-correlation-id",
    "request_id:no-trace",
    "forwarded:uvicorn",
    "metrics:floor",
    "forwarded:floor",
    "request_id:floor",
)
# Our six layers at their floor (floor_layers.py): the least any implementation of them can cost. The error
# handler and the drain are at theirs already.
FLOOR_OF = {layer: f"{layer}:floor" for layer in ("metrics", "armor", "forwarded", "request_id")}
OURS_FLOOR = tuple(FLOOR_OF.get(layer, layer) for layer in OURS)
SCAFFOLD_FLOOR = tuple(FLOOR_OF.get(layer, layer) for layer in SCAFFOLD)
LAYERS = ("noop", *SCAFFOLD, *PEERS)
STACKS: dict[str, tuple[str, ...]] = {
    "bare": (),
    "noop8": ("noop",) * 8,
    **{layer: (layer,) for layer in SCAFFOLD},
    **{peer: (peer,) for peer in PEERS},
    "ours": OURS,
    "starlette": STARLETTE,
    "scaffold": SCAFFOLD,
    "ours:floor": OURS_FLOOR,
    "scaffold:floor": SCAFFOLD_FLOOR,
}
REQUEST = (
    b"GET /api/hello HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: bench\r\nAccept: */*\r\n"
    b"X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: www.example.com\r\n\r\n"
)


def _armor_defaults() -> list[tuple[bytes, bytes]]:
    """The headers ArmorHeaderMiddleware adds with its defaults to a JSON answer for a public host."""
    from c2casgiutils.headers import ArmorHeaderMiddleware

    sent: list[tuple[bytes, bytes]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})

    async def send(message: Any) -> None:
        sent.extend(message["headers"])

    scope = {"type": "http", "method": "GET", "path": "/api/hello", "headers": [(b"host", b"www.example.com")]}
    # Driven by hand, not asyncio.run(): called while the benchmark's event loop runs; nothing here waits.
    with contextlib.suppress(StopIteration):
        ArmorHeaderMiddleware(app)(scope, None, send).send(None)
    return [header for header in sent if header[0] != b"content-type"]


class Noop:
    """Calls the next layer: what a layer costs before it does any work."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


class PassThroughErrors:
    """The least an error handler does on a request that does not fail: a try/except around the app."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await self.app(scope, receive, send)
        except Exception:
            await send({"type": "http.response.start", "status": 500, "headers": []})
            await send({"type": "http.response.body", "body": b""})


class FloorHeaders:
    """The least a security-headers layer does: append the 11 default headers as a constant list."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.headers = _armor_defaults()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def wrapped(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *self.headers]
            await send(message)

        await self.app(scope, receive, wrapped)


def stack_layers(stack: str) -> tuple[str, ...]:
    """The layers of a named stack, or of ``layer+layer+...`` (innermost first): a stack of one's own."""
    if stack in STACKS:
        return STACKS[stack]
    layers = tuple(stack.split("+"))
    unknown = [layer for layer in layers if layer not in LAYERS]
    if "+" not in stack or unknown:
        raise KeyError(stack)
    return layers


def _add(app: Any, layer: str, registry: Any) -> None:
    """Add one layer as the scaffold (or the peer's documentation) adds it."""
    from fastapi.middleware.cors import CORSMiddleware
    from fastapi.middleware.gzip import GZipMiddleware
    from fastapi.middleware.trustedhost import TrustedHostMiddleware

    from c2casgiutils import config, errors, headers, lifecycle, prometheus, request_id

    adders: dict[str, Callable[[], None]] = {
        "noop": lambda: app.add_middleware(Noop),
        "errors": lambda: errors.install_error_handlers(app),
        "metrics": lambda: app.add_middleware(prometheus.PrometheusMiddleware, registry=registry),
        "gzip": lambda: app.add_middleware(GZipMiddleware, minimum_size=1000),
        "cors": lambda: app.add_middleware(
            CORSMiddleware, allow_origins=["https://www.example.com"], allow_methods=["GET"], allow_headers=[]
        ),
        "armor": lambda: app.add_middleware(
            headers.ArmorHeaderMiddleware,
            headers_config={"http": {"headers": {"Strict-Transport-Security": None} if config.settings.http else {}}},
        ),
        "trustedhost": lambda: app.add_middleware(
            TrustedHostMiddleware, allowed_hosts=["www.example.com", "127.0.0.1"]
        ),
        "drain": lambda: app.add_middleware(lifecycle.DrainMiddleware),
        "request_id": lambda: app.add_middleware(request_id.RequestIdMiddleware),
        "request_id:no-trace": lambda: app.add_middleware(request_id.RequestIdMiddleware, tracing=False),
        "forwarded": lambda: app.add_middleware(
            headers.ForwardedHeadersMiddleware,
            trusted_hosts=["127.0.0.1"],
            headers_type="x-forwarded",
            fields=config.settings.proxy_headers.fields,
            hops=config.settings.proxy_headers.hops,
        ),
        "errors:passthrough": lambda: app.add_middleware(PassThroughErrors),
        "armor:floor": lambda: app.add_middleware(FloorHeaders),
    }
    if layer in adders:
        adders[layer]()
    elif layer in ("metrics:floor", "forwarded:floor", "request_id:floor"):
        import floor_layers

        floors = {
            "metrics:floor": floor_layers.FloorMetrics,
            "forwarded:floor": floor_layers.FloorForwarded,
            "request_id:floor": floor_layers.FloorRequestId,
        }
        app.add_middleware(floors[layer])
    elif layer == "metrics:instrumentator":
        from prometheus_fastapi_instrumentator import Instrumentator

        Instrumentator(should_instrument_requests_inprogress=True, registry=registry).instrument(app)
    elif layer == "metrics:starlette-exporter":
        from starlette_exporter import PrometheusMiddleware

        app.add_middleware(PrometheusMiddleware)
    elif layer == "armor:secure":
        from secure.middleware.asgi import SecureASGIMiddleware

        app.add_middleware(SecureASGIMiddleware)
    elif layer == "request_id:asgi-correlation-id":
        from asgi_correlation_id import CorrelationIdMiddleware

        app.add_middleware(CorrelationIdMiddleware)
    elif layer == "forwarded:uvicorn":
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts="127.0.0.1")
    else:
        raise ValueError(f"unknown layer {layer!r}")


def build(layers: tuple[str, ...]) -> Any:
    from fastapi import APIRouter, FastAPI
    from prometheus_client import CollectorRegistry

    import c2casgiutils

    app = FastAPI()
    app.mount("/c2c", c2casgiutils.app)
    router = APIRouter(prefix="/api")

    @router.get("/hello")
    async def hello() -> dict[str, str]:
        return {"message": "Hello world!"}

    @router.get("/processes")
    async def processes() -> list[int]:
        return []

    app.include_router(router)
    registry = CollectorRegistry()  # one per application: several stacks live in this process
    for layer in layers:
        _add(app, layer, registry)
    return app


def measure(stacks: list[str], rounds: int, requests: int, wall: bool = False) -> dict[str, list[float]]:
    """µs per request of each stack, one figure per round: CPU time of this thread (wall time with ``wall``)."""
    from uvicorn_inproc import alternating_rounds

    apps = {stack: build(stack_layers(stack)) for stack in stacks}
    return alternating_rounds(apps, REQUEST, rounds, requests, time.perf_counter if wall else time.thread_time)


def count_child(stack: str, requests: int) -> None:
    """Serve ``requests`` requests where valgrind counts (see ``uvicorn_inproc.instructions``)."""
    import uvloop
    from uvicorn_inproc import InProcessServer, counted

    app = build(stack_layers(stack))
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    server = InProcessServer(app, loop)
    loop.run_until_complete(server.run(REQUEST, 300))  # warm up, not counted
    counted(lambda: loop.run_until_complete(server.run(REQUEST, requests)))
    server.check_ok()


def count_instructions(stacks: list[str], requests: int) -> dict[str, float]:
    """Instructions per request of each stack, two children at a time (one per core)."""
    import sys
    from concurrent.futures import ThreadPoolExecutor

    from uvicorn_inproc import instructions

    def one(stack: str) -> float:
        command = [sys.executable, __file__, "--count-child", stack, "--requests", str(requests)]
        return instructions(command, requests)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(stacks, pool.map(one, stacks), strict=True))


def instructions(arguments: argparse.Namespace, stacks: list[str]) -> None:
    counts = count_instructions(stacks, arguments.requests)
    bare_us = min(measure(["bare"], arguments.rounds, 2000, arguments.wall)["bare"])
    rate = counts["bare"] / bare_us  # instructions per µs
    print(
        f"uvicorn's httptools protocol in one process, GET /api/hello from a trusted proxy: instructions per request "
        f"(callgrind, {arguments.requests} requests after 300 of warm-up); µs at bare's rate "
        f"({bare_us:.1f} µs, best of {arguments.rounds} timed rounds: {rate / 1000:.2f} k instructions per µs)"
    )
    print("| stack | layers (innermost first) | k instructions | extra k instructions over bare | extra µs |")
    print("|---|---|---|---|---|")
    for stack in stacks:
        extra = counts[stack] - counts["bare"]
        figures = f"{counts[stack] / 1000:.1f} | {extra / 1000:+.1f} | {extra / rate:+.1f}"
        print(f"| {stack} | {_layers(stack)} | {figures} |")
    print()
    for whole, extra in _ours_inside(counts, lambda whole: counts[whole] - counts["starlette"]):
        print(f"{whole} - starlette ({_OURS_LINE[whole]}): {extra / 1000:+.1f} k instructions, {extra / rate:+.1f} µs")


def paired(arguments: argparse.Namespace, stacks: list[str]) -> None:
    from uvicorn_inproc import paired_extra, paired_rounds

    apps = {stack: build(stack_layers(stack)) for stack in stacks}
    clock = time.perf_counter if arguments.wall else time.thread_time
    samples = paired_rounds(apps, REQUEST, arguments.rounds, arguments.requests, clock)
    extra = paired_extra(samples, "bare")
    print(
        f"uvicorn's httptools protocol in one process, GET /api/hello from a trusted proxy, {arguments.rounds} rounds "
        f"of {arguments.requests} requests in shuffled order; {'wall-clock' if arguments.wall else 'CPU'} µs per "
        "request; extra: the median of the rounds' differences to bare, and their quartiles"
    )
    print("| stack | layers (innermost first) | median µs | extra µs over bare | quartiles of the extra |")
    print("|---|---|---|---|---|")
    for stack in stacks:
        median, first, third = extra[stack]
        figures = f"{statistics.median(samples[stack]):.1f} | {median:+.1f} | {first:+.1f} .. {third:+.1f}"
        print(f"| {stack} | {_layers(stack)} | {figures} |")
    print()
    over_starlette = paired_extra(samples, "starlette") if "starlette" in samples else {}
    for whole, ours in _ours_inside(extra, lambda whole: over_starlette[whole][0]):
        print(f"{whole} - starlette ({_OURS_LINE[whole]}): {ours:+.1f} µs (median of the rounds' differences)")


_OURS_LINE = {
    "scaffold": "our six layers inside the whole stack",
    "scaffold:floor": "our six layers at their floor inside the whole stack",
}


def _ours_inside(measured: dict[str, Any], extra: Callable[[str], float]) -> list[tuple[str, float]]:
    """(whole stack, what our layers add inside it) for the whole stacks measured beside ``starlette``."""
    if "starlette" not in measured:
        return []
    return [(whole, extra(whole)) for whole in _OURS_LINE if whole in measured]


def _layers(stack: str) -> str:
    layers = stack_layers(stack)
    if stack == "noop8":
        return "noop x 8"
    return ", ".join(layers) if len(set(layers)) > 1 else (layers[:1] or ("-",))[0]


def _known(stack: str) -> bool:
    try:
        stack_layers(stack)
    except KeyError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, help="timed rounds (default 21; 400 with --paired)")
    parser.add_argument("--requests", type=int, help="requests a round (default 2000; 100 with --paired; 500 counted)")
    parser.add_argument(
        "--stacks",
        default=",".join(STACKS),
        help="comma list of stack names or of layer+layer+... (innermost first); bare is always measured",
    )
    parser.add_argument("--wall", action="store_true", help="wall-clock time instead of this thread's CPU time")
    parser.add_argument("--instructions", action="store_true", help="count instructions per request (valgrind)")
    parser.add_argument(
        "--paired",
        action="store_true",
        help="many short rounds in shuffled order (--rounds, default 400, of --requests, default 100): the median "
        "of each round's difference to bare",
    )
    parser.add_argument("--count-child", metavar="STACK", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.rounds is None:
        arguments.rounds = 400 if arguments.paired else 21
    if arguments.requests is None:
        counted = arguments.instructions or arguments.count_child
        arguments.requests = 100 if arguments.paired else 500 if counted else 2000
    if arguments.count_child:
        os.environ["C2C__PROMETHEUS__PORT"] = ""
        count_child(arguments.count_child, arguments.requests)
        return
    wanted = [stack for stack in arguments.stacks.split(",") if stack]
    unknown = [stack for stack in wanted if not _known(stack)]
    if unknown:
        parser.error(f"unknown stacks {unknown}; known: {', '.join(STACKS)}, or layer+layer+... of {', '.join(LAYERS)}")
    # Only the C2C__ settings the scaffold's stack reads; no metrics server.
    os.environ["C2C__PROMETHEUS__PORT"] = ""
    stacks = ["bare", *(stack for stack in wanted if stack != "bare")]
    if arguments.instructions:
        instructions(arguments, stacks)
        return
    if arguments.paired:
        paired(arguments, stacks)
        return
    samples = measure(stacks, arguments.rounds, arguments.requests, arguments.wall)
    best = {stack: min(values) for stack, values in samples.items()}
    bare = best["bare"]
    print(
        f"uvicorn's httptools protocol in one process, GET /api/hello from a trusted proxy, best of "
        f"{arguments.rounds} alternating rounds of {arguments.requests} requests; "
        f"{'wall-clock' if arguments.wall else 'CPU'} µs per request"
    )
    print("| stack | layers (innermost first) | best µs | extra µs over bare | bare / stack |")
    print("|---|---|---|---|---|")
    for stack in stacks:
        figures = f"{best[stack]:.1f} | {best[stack] - bare:+.1f} | {bare / best[stack]:.3f}"
        print(f"| {stack} | {_layers(stack)} | {figures} |")
    print()
    for whole, ours in _ours_inside(best, lambda whole: best[whole] - best["starlette"]):
        print(f"{whole} - starlette ({_OURS_LINE[whole]}): {ours:+.1f} µs")


if __name__ == "__main__":
    main()
