"""Cost per request of the trace context and its log fields, without and with span export, vs OpenTelemetry's ASGI
instrumentation.

Every stack serves the same FastAPI route, which writes one log line through ``JsonFormatter`` (to a stream that
discards it), driven through uvicorn's real HTTP protocol in this process (``uvicorn_inproc.py``); the request
carries a ``traceparent``. Stacks alternate within each round; a figure is the best (and the median) µs per request
over the rounds, and the differences compare stacks measured in the same run:

- ``bare``: the route alone;
- ``request_id``: + ``RequestIdMiddleware`` with ``C2C__TRACING__ENABLED=false`` (request ids only);
- ``trace_context``: + ``RequestIdMiddleware`` as shipped: W3C trace context, trace ids in the log line; its
  difference to ``request_id`` is the cost of the trace context without export (budget: 3 µs);
- ``c2c_export``: ``trace_context`` with span export (the ``otel`` extra): the SDK's tracer provider, batch
  processor and OTLP/HTTP exporter sending to a local collector in another process; the server span is FastAPI's
  own when this FastAPI makes one, else c2casgiutils';
- ``otel_asgi``: the peer, opentelemetry-instrumentation-asgi's ``OpenTelemetryMiddleware`` with the same provider
  and exporter, and opentelemetry-instrumentation-logging for the trace ids in the log line (no request id).

    .venv/bin/python bench/bench_tracing.py [--rounds 9] [--requests 3000]

The peer needs ``pip install opentelemetry-instrumentation-asgi opentelemetry-instrumentation-logging``; without
them its row is left out.
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


def _stacks(provider: Any) -> dict[str, tuple[Any, Any]]:
    """Each stack: (ASGI app, the export to switch on while it runs, or None)."""
    from c2casgiutils import config, request_id
    from c2casgiutils.tracing import _export, _fastapi

    logger = _logger()
    no_native_spans = {"telemetry": {"tracing": False}} if _fastapi._has_telemetry() else {}
    native_spans = {"telemetry": {"tracer_provider": provider}} if _fastapi._has_telemetry() else {}
    stacks: dict[str, tuple[Any, Any]] = {"bare": (_app(logger, **no_native_spans), None)}
    config.settings.tracing.enabled = False
    ids_only = _app(logger, **no_native_spans)
    ids_only.add_middleware(request_id.RequestIdMiddleware)
    ids_only.middleware_stack = ids_only.build_middleware_stack()  # the middleware reads the setting now
    config.settings.tracing.enabled = True
    stacks["request_id"] = (ids_only, None)
    traced = _app(logger, **no_native_spans)
    traced.add_middleware(request_id.RequestIdMiddleware)
    traced.middleware_stack = traced.build_middleware_stack()
    stacks["trace_context"] = (traced, None)
    exported = _app(logger, **native_spans)
    exported.add_middleware(request_id.RequestIdMiddleware)
    exported.middleware_stack = exported.build_middleware_stack()
    stacks["c2c_export"] = (exported, _export.ServerSpans(provider))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--requests", type=int, default=3000)
    arguments = parser.parse_args()

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
        provider.add_span_processor(BatchSpanProcessor(exporter))
        samples = asyncio.run(_measure(_stacks(provider), provider, arguments.rounds, arguments.requests))
        provider.shutdown()
    finally:
        collector.kill()
        collector.wait(10)
    _report(samples, arguments)


async def _run(server: InProcessServer, export: Any, provider: Any, requests: int) -> float:
    """µs per request of one round; with export, the flush of its spans counts too (else the next stack pays it)."""
    with _exporting(export, provider):
        per_request = await server.run(REQUEST, requests)
    if export is not None:
        start = time.perf_counter()
        provider.force_flush()
        per_request += (time.perf_counter() - start) * 1e6 / requests
    return per_request


async def _measure(
    stacks: dict[str, tuple[Any, Any]], provider: Any, rounds: int, requests: int
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
            samples[name].append(await _run(servers[name], stacks[name][1], provider, requests))
    for server in servers.values():
        server.check_ok()
    return samples


def _report(samples: dict[str, list[float]], arguments: argparse.Namespace) -> None:
    best = {name: min(values) for name, values in samples.items()}
    median = {name: statistics.median(values) for name, values in samples.items()}
    print(f"µs per request through uvicorn's protocol, {arguments.rounds} rounds of {arguments.requests} requests:")
    for name in samples:
        extra = best[name] - best["bare"]
        print(f"  {name:<14} best {best[name]:7.1f}  median {median[name]:7.1f}  ({extra:+6.1f} on bare)")
    print(f"trace context without export: {best['trace_context'] - best['request_id']:+.1f} µs per request "
          f"(median {median['trace_context'] - median['request_id']:+.1f}) over request ids alone")
    print(f"span export, c2casgiutils: {best['c2c_export'] - best['bare']:+.1f} µs on bare")
    if "otel_asgi" in best:
        print(f"span export, opentelemetry-instrumentation-asgi: {best['otel_asgi'] - best['bare']:+.1f} µs on bare")


if __name__ == "__main__":
    main()
