"""Cost per request of the trace context and its log fields, without and with span export, vs OpenTelemetry's ASGI
instrumentation.

Every stack serves the same FastAPI route, which writes one log line through ``JsonFormatter`` (to a stream that
discards it), driven through uvicorn's real HTTP protocol in this process (``uvicorn_inproc.py``); the request
carries a ``traceparent``. Stacks alternate within each round; a figure is the best (and the median) CPU time per
request of this process over the rounds (the exporter's thread included), and the differences compare stacks
measured in the same run:

- ``bare``: the route alone;
- ``request_id``: + ``RequestIdMiddleware(tracing=False)`` (request ids only, as ``C2C__TRACING__ENABLED=false``);
- ``trace_context``: + ``RequestIdMiddleware`` as shipped: W3C trace context, trace ids in the log line; its
  difference to ``request_id`` is the cost of the trace context without export (budget: 3 µs);
- ``c2c_export``: ``trace_context`` with span export (the ``otel`` extra): the SDK's tracer provider, batch
  processor and OTLP/HTTP exporter sending to a local collector in another process; the server span is FastAPI's
  own when this FastAPI makes one (with its 3 operation spans), else c2casgiutils';
- ``c2c_own_span`` (FastAPI releases with their own spans): the same with FastAPI's spans off, so the one server
  span is c2casgiutils';
- ``otel_asgi``: the peer, opentelemetry-instrumentation-asgi's ``OpenTelemetryMiddleware`` with the same provider
  and exporter, and opentelemetry-instrumentation-logging for the trace ids in the log line (no request id).

    .venv/bin/python bench/bench_tracing.py [--rounds 9] [--requests 3000]
    .venv/bin/python bench/bench_tracing.py --micro   # the middleware code alone, far less noisy
    .venv/bin/python bench/bench_tracing.py --instructions [--requests 500]   # needs valgrind

``--micro`` calls ``RequestIdMiddleware`` directly around a minimal ASGI app, many times in one event loop, with
tracing off and on, and prints the best-of-rounds µs per call: the difference is the trace context's own cost,
without FastAPI and uvicorn around it. It also times a ``JsonFormatter`` line inside a request and what its two
trace fields add (reading the context, serialising two more keys).

``--instructions`` counts the machine instructions per request of ``bare``, ``request_id`` and ``trace_context``
through uvicorn's protocol (valgrind's callgrind, counting only while the measured requests run, in a child
process per stack, as ``bench_stack.py --instructions``): the same figures on every run whatever else the machine
does. The µs column converts them at the rate of bare's best timed round of the same run (CPU time of the thread).

The peer is in the ``bench`` dependency group of pyproject.toml (``./scripts/bench-env`` installs it into
``.venv``); without it its row is left out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import io
import logging
import os
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import SpanProcessor

sys.path.insert(0, str(Path(__file__).parent))
from uvicorn_inproc import InProcessServer

REQUEST = (
    b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: bench\r\nAccept: */*\r\n"
    b"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n"
)
# A collector that takes the OTLP requests and answers 200: the export's cost stays in the measured process.
COLLECTOR = textwrap.dedent(
    """
    import sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()
    """
)


class _Discard(io.TextIOBase):
    def write(self, text: str) -> int:
        return len(text)


def _logger() -> logging.Logger:
    from c2casgiutils.logs import JsonFormatter

    logger = logging.getLogger("bench.tracing")
    handler = logging.StreamHandler(_Discard())
    handler.setFormatter(JsonFormatter())
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def _app(logger: logging.Logger, **options: Any) -> Any:
    from fastapi import FastAPI

    app = FastAPI(**options)

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        logger.info("hello handled")
        return {"hello": "world"}

    return app


PLAIN_STACKS = ("bare", "request_id", "trace_context")


def _plain_stacks(logger: logging.Logger) -> dict[str, Any]:
    """The stacks without span export: the route alone, + request ids, + request ids and trace context."""
    from c2casgiutils import request_id
    from c2casgiutils.tracing import _fastapi

    no_native_spans = {"telemetry": {"tracing": False}} if _fastapi._has_telemetry() else {}
    stacks = {"bare": _app(logger, **no_native_spans)}
    for name, traced in (("request_id", False), ("trace_context", True)):
        app = _app(logger, **no_native_spans)
        app.add_middleware(request_id.RequestIdMiddleware, tracing=traced)
        stacks[name] = app
    return stacks


def _stacks(provider: Any) -> dict[str, tuple[Any, Any]]:
    """Each stack: (ASGI app, the export to switch on while it runs, or None)."""
    from c2casgiutils import request_id
    from c2casgiutils.tracing import _export, _fastapi

    logger = _logger()
    no_native_spans = {"telemetry": {"tracing": False}} if _fastapi._has_telemetry() else {}
    native_spans = {"telemetry": {"tracer_provider": provider}} if _fastapi._has_telemetry() else {}
    stacks: dict[str, tuple[Any, Any]] = {name: (app, None) for name, app in _plain_stacks(logger).items()}
    exported = _app(logger, **native_spans)
    exported.add_middleware(request_id.RequestIdMiddleware)
    exported.middleware_stack = exported.build_middleware_stack()
    stacks["c2c_export"] = (exported, _export.ServerSpans(provider))
    if native_spans:  # this FastAPI starts spans itself: also the span c2casgiutils makes when it does not
        own_span = _app(logger, **no_native_spans)
        own_span.add_middleware(request_id.RequestIdMiddleware)
        own_span.middleware_stack = own_span.build_middleware_stack()
        stacks["c2c_own_span"] = (own_span, _export.ServerSpans(provider))
    try:
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
        from opentelemetry.instrumentation.logging import LoggingInstrumentor  # noqa: F401
    except ImportError:
        print("opentelemetry-instrumentation-asgi/-logging not installed: no otel_asgi row", file=sys.stderr)
    else:
        peer = OpenTelemetryMiddleware(_app(logger, **no_native_spans), tracer_provider=provider)
        stacks["otel_asgi"] = (peer, "asgi")
    return stacks


@contextlib.contextmanager
def _exporting(export: Any, provider: Any) -> Any:
    """Spans on for one stack: c2casgiutils' export, or the peer's log fields."""
    from c2casgiutils.tracing import _export

    instrumentor = None
    if export == "asgi":
        from opentelemetry.instrumentation.logging import LoggingInstrumentor

        instrumentor = LoggingInstrumentor()
        instrumentor.instrument(tracer_provider=provider, set_logging_format=False)
    elif export is not None:
        _export.ACTIVE = export
    try:
        yield
    finally:
        _export.ACTIVE = None
        if instrumentor is not None:
            instrumentor.uninstrument()


def micro(rounds: int) -> None:
    """µs per call of RequestIdMiddleware with tracing off and on; a JSON log line and its trace fields."""
    from c2casgiutils import request_id

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/hello",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"user-agent", b"bench"),
            (b"accept", b"*/*"),
            (b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        ],
        "client": ("127.0.0.1", 50000),
    }

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def send(message: Any) -> None:
        del message

    stacks: dict[str, Any] = {
        "app": app,
        "ids_only": request_id.RequestIdMiddleware(app, tracing=False),
        "trace_context": request_id.RequestIdMiddleware(app, tracing=True),
    }

    async def measure() -> dict[str, list[float]]:
        samples: dict[str, list[float]] = {name: [] for name in stacks}
        for _ in range(rounds):
            for name, stack in stacks.items():
                count = 20_000
                start = time.perf_counter()
                for _ in range(count):
                    await stack(dict(scope), None, send)
                samples[name].append((time.perf_counter() - start) / count * 1e6)
        return samples

    best = {name: min(values) for name, values in asyncio.run(measure()).items()}
    print(f"µs per call, best of {rounds} rounds of 20000 (the middleware around a minimal ASGI app):")
    for name, value in best.items():
        print(f"  {name:<18} {value:6.2f}")
    print(f"trace context: {best['trace_context'] - best['ids_only']:+.2f} µs per request")
    _log_fields(rounds)


def _log_fields(rounds: int) -> None:
    """µs per JSON log line, and what its two trace fields add (reading them, writing them)."""
    import json

    from c2casgiutils import tracing
    from c2casgiutils.logs import JsonFormatter

    formatter = JsonFormatter()
    record = logging.LogRecord("bench", logging.INFO, __file__, 1, "hello %s", ("handled",), None)
    entry = {"time": "2026-12-07T00:00:00.000+00:00", "level": "INFO", "logger": "bench", "message": "hello handled",
             "request_id": "0" * 32}
    with_ids = {**entry, "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7"}
    token = tracing.trace_context_var.set(tracing.TraceContext(with_ids["trace_id"], with_ids["span_id"], True))
    try:
        timings: dict[str, list[float]] = {"line": [], "ids": [], "without": [], "with": []}
        count = 50_000
        for _ in range(rounds):
            for name, call in (
                ("line", lambda: formatter.format(record)),
                ("ids", tracing.log_ids),
                ("without", lambda: json.dumps(entry)),
                ("with", lambda: json.dumps(with_ids)),
            ):
                start = time.perf_counter()
                for _ in range(count):
                    call()
                timings[name].append((time.perf_counter() - start) / count * 1e6)
    finally:
        tracing.trace_context_var.reset(token)
    best = {name: min(values) for name, values in timings.items()}
    fields = best["ids"] + best["with"] - best["without"]
    print(f"a JSON log line: {best['line']:.2f} µs, of which the trace fields {fields:+.2f} µs "
          f"(reading {best['ids']:.2f}, writing {best['with'] - best['without']:.2f})")


def count_child(stack: str, requests: int) -> None:
    """Serve ``requests`` requests where valgrind counts (see ``uvicorn_inproc.instructions``)."""
    import uvloop
    from uvicorn_inproc import counted

    app = _plain_stacks(_logger())[stack]
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    server = InProcessServer(app, loop)
    loop.run_until_complete(server.run(REQUEST, 300))  # warm up, not counted
    counted(lambda: loop.run_until_complete(server.run(REQUEST, requests)))
    server.check_ok()


def instructions(rounds: int, requests: int) -> None:
    """Instructions per request of the stacks without export, and the trace context's share in µs."""
    from concurrent.futures import ThreadPoolExecutor

    from uvicorn_inproc import alternating_rounds
    from uvicorn_inproc import instructions as count

    def one(stack: str) -> float:
        return count([sys.executable, __file__, "--count-child", stack, "--requests", str(requests)], requests)

    with ThreadPoolExecutor(max_workers=2) as pool:  # one child per core
        counts = dict(zip(PLAIN_STACKS, pool.map(one, PLAIN_STACKS), strict=True))
    bare_app = _plain_stacks(_logger())["bare"]
    bare_us = min(alternating_rounds({"bare": bare_app}, REQUEST, rounds, 2000, time.thread_time)["bare"])
    rate = counts["bare"] / bare_us  # instructions per µs
    print(
        f"uvicorn's httptools protocol in one process, GET /hello with a traceparent and one JSON log line: "
        f"instructions per request (callgrind, {requests} requests after 300 of warm-up); µs at bare's rate "
        f"({bare_us:.1f} µs, best of {rounds} timed rounds: {rate / 1000:.2f} k instructions per µs)"
    )
    print("| stack | k instructions | extra k instructions over bare | extra µs |")
    print("|---|---|---|---|")
    for stack in PLAIN_STACKS:
        extra = counts[stack] - counts["bare"]
        print(f"| {stack} | {counts[stack] / 1000:.1f} | {extra / 1000:+.1f} | {extra / rate:+.1f} |")
    traced = counts["trace_context"] - counts["request_id"]
    print(
        f"\ntrace context without export (trace_context - request_id): {traced / 1000:+.1f} k instructions, "
        f"{traced / rate:+.2f} µs per request (budget 3 µs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--micro", action="store_true", help="the middleware code alone")
    parser.add_argument("--no-export", action="store_true", help="only the stacks without span export")
    parser.add_argument("--instructions", action="store_true", help="count instructions per request (valgrind)")
    parser.add_argument("--count-child", choices=PLAIN_STACKS, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.count_child:
        count_child(arguments.count_child, arguments.requests)
        return
    if arguments.instructions:
        counted_requests = 500 if arguments.requests == parser.get_default("requests") else arguments.requests
        instructions(arguments.rounds, counted_requests)
        return
    if arguments.micro:
        micro(arguments.rounds)
        return

    collector = subprocess.Popen([sys.executable, "-c", COLLECTOR], stdout=subprocess.PIPE, text=True)
    try:
        assert collector.stdout is not None
        port = int(collector.stdout.readline())
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
        exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces")
        # A queue that holds a whole round: every span is exported (and its cost counted), none dropped.
        provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=1 << 17))
        counter = _SpanCounter()
        provider.add_span_processor(counter)
        stacks = _stacks(provider)
        if arguments.no_export:
            stacks = {name: stack for name, stack in stacks.items() if stack[1] is None}
        samples = asyncio.run(_measure(stacks, provider, arguments.rounds, arguments.requests, counter))
        provider.shutdown()
    finally:
        collector.kill()
        collector.wait(10)
    _report(samples, arguments, counter)


class _SpanCounter(SpanProcessor):
    """A span processor that counts the spans each stack ends."""

    def __init__(self) -> None:
        self.stack = ""
        self.ended: dict[str, int] = {}
        self.requests: dict[str, int] = {}

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        del span, parent_context

    def on_end(self, span: Any) -> None:
        del span
        self.ended[self.stack] = self.ended.get(self.stack, 0) + 1

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        del timeout_millis
        return True


async def _run(server: InProcessServer, export: Any, provider: Any, requests: int) -> float:
    """CPU µs per request of one round (this process, all its threads: the exporter's included); with export, the
    flush of its spans counts too (else the next stack pays it).

    CPU time, not elapsed time: on a shared machine the other processes' load stretches elapsed time by tens of
    µs per request, and not evenly between the rounds.
    """
    start = time.process_time()
    with _exporting(export, provider):
        await server.run(REQUEST, requests)
    if export is not None:
        provider.force_flush()
    return (time.process_time() - start) * 1e6 / requests


async def _measure(
    stacks: dict[str, tuple[Any, Any]], provider: Any, rounds: int, requests: int, counter: _SpanCounter
) -> dict[str, list[float]]:
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {0})  # the exporter's thread shares the core, as in a worker
    loop = asyncio.get_running_loop()
    servers = {name: InProcessServer(app, loop) for name, (app, _) in stacks.items()}
    for name, server in servers.items():
        await _run(server, stacks[name][1], provider, 500)  # warm up
    gc.collect()
    gc.freeze()
    samples: dict[str, list[float]] = {name: [] for name in stacks}
    names = list(stacks)
    for round_index in range(rounds):
        for name in names if round_index % 2 == 0 else names[::-1]:
            counter.stack = name
            counter.requests[name] = counter.requests.get(name, 0) + requests
            samples[name].append(await _run(servers[name], stacks[name][1], provider, requests))
    for server in servers.values():
        server.check_ok()
    return samples


def _report(samples: dict[str, list[float]], arguments: argparse.Namespace, counter: _SpanCounter) -> None:
    best = {name: min(values) for name, values in samples.items()}
    median = {name: statistics.median(values) for name, values in samples.items()}
    print(
        f"CPU µs per request through uvicorn's protocol, {arguments.rounds} rounds of {arguments.requests} requests:"
    )
    for name in samples:
        extra = best[name] - best["bare"]
        spans = counter.ended.get(name, 0) / counter.requests[name]
        print(
            f"  {name:<14} best {best[name]:7.1f}  median {median[name]:7.1f}  ({extra:+6.1f} on bare)"
            f"  spans per request {spans:.0f}"
        )
    print(f"trace context without export: {best['trace_context'] - best['request_id']:+.1f} µs per request "
          f"(median {median['trace_context'] - median['request_id']:+.1f}) over request ids alone")
    if "c2c_export" in best:
        print(f"span export, c2casgiutils: {best['c2c_export'] - best['bare']:+.1f} µs on bare")
    if "c2c_own_span" in best:
        print(f"span export, c2casgiutils' own span: {best['c2c_own_span'] - best['bare']:+.1f} µs on bare")
    if "otel_asgi" in best:
        print(f"span export, opentelemetry-instrumentation-asgi: {best['otel_asgi'] - best['bare']:+.1f} µs on bare")


if __name__ == "__main__":
    main()
