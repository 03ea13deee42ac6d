"""Server spans with the OpenTelemetry SDK: one per request, named after the route template, built on FastAPI's own.

The SDK's real tracer provider records into its in-memory exporter. Two cases: FastAPI starts the server span
itself (its releases with telemetry, given the provider) and c2casgiutils builds on it; or FastAPI makes none
(older releases, ``telemetry={"tracing": False}``) and c2casgiutils starts it. Either way each request has exactly
one SERVER span, its name is the method and the template of the metrics' ``handler`` label (``/c2c`` included),
and the logs and outgoing calls of the request carry its ids. The environment checks and the export through the
real OTLP/HTTP exporter to a local receiver, flushed by ``shutdown()``, run in subprocesses (a process has one
global tracer provider).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry

import c2casgiutils
from c2casgiutils import config, errors, prometheus, request_id, tracing
from c2casgiutils.tracing import _export, _fastapi
from tests.otlp_receiver import OtlpReceiver
from tests.tracing_fixtures import json_lines

ROOT = Path(__file__).parent.parent
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
_LOGGER = logging.getLogger("tracing_export_test")
# Whose span: "fastapi" (this FastAPI starts it, when it can) or "c2c" (FastAPI told not to, or unable to).
MODES = ["c2c", "fastapi"] if _fastapi._has_telemetry() else ["c2c"]


@pytest.fixture
def exporter() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    yield provider, memory
    _export.ACTIVE = None


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    with json_lines(_LOGGER) as stream:
        yield stream


def _service(mode: str, provider: TracerProvider, registry: CollectorRegistry, **telemetry: Any) -> FastAPI:
    options: dict[str, Any] = {}
    if _fastapi._has_telemetry():
        options["telemetry"] = {"tracer_provider": provider, "tracing": mode == "fastapi", **telemetry}
    app = FastAPI(**options)
    app.mount("/c2c", c2casgiutils.app)

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, Any]:
        _LOGGER.info("item %s", item_id)
        return {"item": item_id, "outgoing": tracing.trace_headers()}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    errors.install_error_handlers(app, client_errors=True)
    app.add_middleware(prometheus.PrometheusMiddleware, registry=registry, prefix="x_")
    app.add_middleware(request_id.RequestIdMiddleware)
    return app


@contextlib.asynccontextmanager
async def _client(app: Any, peer: str = "127.0.0.1") -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(peer, 4000))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client


def _server_spans(memory: InMemorySpanExporter) -> list[ReadableSpan]:
    return [span for span in memory.get_finished_spans() if span.kind == SpanKind.SERVER]


def _handlers(registry: CollectorRegistry) -> set[str]:
    return {
        sample.labels["handler"]
        for metric in registry.collect()
        if metric.name == "x_http_requests"
        for sample in metric.samples
        if sample.name == "x_http_requests_total"
    }


@pytest.mark.parametrize("mode", MODES)
async def test_one_server_span_per_request_named_after_the_handler_label(
    mode: str, exporter: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, memory = exporter
    tracing.start_export(tracer_provider=provider)
    registry = CollectorRegistry()
    app = _service(mode, provider, registry)
    answers = {}
    async with _client(app) as client:
        for path in ("/items/3", "/c2c/health_checks", "/nowhere", "/boom", "/items/x"):
            answers[path] = await client.get(path, headers={"traceparent": TRACEPARENT})
    spans = _server_spans(memory)
    assert len(spans) == 5, [span.name for span in memory.get_finished_spans()]
    by_name = {span.name: span for span in spans}
    handlers = _handlers(registry)
    assert handlers == {"/items/{item_id}", "/c2c/health_checks", "none", "/boom"}
    # The method and the metrics' template; a request that matches no route is named by its method alone.
    assert set(by_name) == {f"GET {handler}" for handler in handlers - {"none"}} | {"GET"}
    for span in spans:
        assert span.context is not None
        assert f"{span.context.trace_id:032x}" == TRACE_ID
        assert span.parent is not None
        assert f"{span.parent.span_id:016x}" == PARENT_ID
        assert span.parent.is_remote
    statuses = {span.name: span.attributes.get("http.response.status_code") for span in spans}  # type: ignore[union-attr]
    assert statuses == {"GET /items/{item_id}": 422, "GET /c2c/health_checks": 200, "GET": 404, "GET /boom": 500}
    assert by_name["GET /boom"].status.status_code == StatusCode.ERROR
    assert by_name["GET /c2c/health_checks"].status.status_code != StatusCode.ERROR
    assert by_name["GET /items/{item_id}"].attributes["http.route"] == "/items/{item_id}"  # type: ignore[index]
    assert answers["/boom"].json()["trace_id"] == TRACE_ID


@pytest.mark.parametrize("mode", MODES)
async def test_logs_and_outgoing_calls_carry_the_server_spans_ids(
    mode: str, exporter: tuple[TracerProvider, InMemorySpanExporter], json_log: io.StringIO
) -> None:
    provider, memory = exporter
    tracing.start_export(tracer_provider=provider)
    app = _service(mode, provider, CollectorRegistry())
    async with _client(app) as client:
        answer = (await client.get("/items/7", headers={"traceparent": TRACEPARENT, "tracestate": "rojo=1"})).json()
    (server,) = _server_spans(memory)
    assert server.context is not None
    line = json.loads(json_log.getvalue().splitlines()[0])
    assert (line["trace_id"], line["span_id"]) == (TRACE_ID, f"{server.context.span_id:016x}")
    outgoing = answer["outgoing"]
    version, trace_id, parent_id, flags = outgoing["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", TRACE_ID, "01")
    # The parent of the next service is a span of this request: the server span or one of its children.
    ids = {f"{span.context.span_id:016x}": span for span in memory.get_finished_spans() if span.context}
    assert parent_id in ids
    span = ids[parent_id]
    while span.kind != SpanKind.SERVER:
        assert span.parent is not None
        span = ids[f"{span.parent.span_id:016x}"]
    assert span is server
    assert outgoing["tracestate"] == "rojo=1"


@pytest.mark.parametrize("mode", MODES)
async def test_untrusted_sender_restarts_the_trace_with_one_span(
    mode: str, exporter: tuple[TracerProvider, InMemorySpanExporter], settings: Any
) -> None:
    settings.tracing.trust_inbound = "trusted_proxies"
    settings.proxy_headers.trusted_hosts = ["10.0.0.0/8"]
    provider, memory = exporter
    tracing.start_export(tracer_provider=provider)
    app = _service(mode, provider, CollectorRegistry(), exclude=tracing.untrusted_trace_context)
    async with _client(app, peer="203.0.113.5") as client:
        assert (await client.get("/items/1", headers={"traceparent": TRACEPARENT})).status_code == 200
        assert (await client.get("/items/2")).status_code == 200
    async with _client(app, peer="10.0.0.7") as client:
        assert (await client.get("/items/3", headers={"traceparent": TRACEPARENT})).status_code == 200
    untrusted, plain, trusted = _server_spans(memory)
    for span in (untrusted, plain):
        assert span.context is not None
        assert f"{span.context.trace_id:032x}" != TRACE_ID
        assert span.parent is None
    assert trusted.context is not None
    assert f"{trusted.context.trace_id:032x}" == TRACE_ID
    assert [span.name for span in (untrusted, plain, trusted)] == ["GET /items/{item_id}"] * 3


@pytest.mark.skipif("fastapi" not in MODES, reason="this FastAPI starts no span of its own")
async def test_fastapi_span_of_an_untrusted_sender_without_the_hook_is_reported(
    exporter: tuple[TracerProvider, InMemorySpanExporter], settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.tracing.trust_inbound = "never"
    provider, memory = exporter
    tracing.start_export(tracer_provider=provider)
    _export._WARNED.discard("trust")
    app = _service("fastapi", provider, CollectorRegistry())
    with caplog.at_level(logging.WARNING, logger="c2casgiutils.tracing._export"):
        async with _client(app) as client:
            await client.get("/items/1", headers={"traceparent": TRACEPARENT})
            await client.get("/items/2", headers={"traceparent": TRACEPARENT})
    (warning,) = [record for record in caplog.records if "untrusted" in record.getMessage()]
    assert "untrusted_trace_context" in warning.getMessage()
    assert len(_server_spans(memory)) == 2


async def test_an_exception_escaping_the_app_is_recorded(exporter: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, memory = exporter
    tracing.start_export(tracer_provider=provider)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise ValueError("broken")

    async with _client(request_id.RequestIdMiddleware(app)) as client:
        assert (await client.get("/x")).status_code == 500
    (span,) = _server_spans(memory)
    assert span.name == "GET"
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["error.type"] == "ValueError"
    assert [event.name for event in span.events] == ["exception"]


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "127.0.0.1:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "ftp://collector/"}, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        ({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER"),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "half"}, "OTEL_TRACES_SAMPLER_ARG"),
        ({"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"}, "SAMPLER_ARG"),
    ],
)
def test_invalid_opentelemetry_variables_stop_the_start(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], named: str
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(config.SettingsError, match=named):
        tracing.start_export()
    assert _export.ACTIVE is None


def test_no_export_without_endpoint_or_when_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _export.ENDPOINT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert tracing.start_export() is None
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert tracing.start_export() is None
    assert _export.ACTIVE is None


EXPORT_SCRIPT = """
import asyncio, json, os, sys
from fastapi import FastAPI
import httpx
import c2casgiutils
from c2casgiutils import request_id, tracing

app = FastAPI()
app.mount("/c2c", c2casgiutils.app)

@app.get("/hello")
async def hello():
    return {"sampled": tracing.get_trace_context().sampled}

app.add_middleware(request_id.RequestIdMiddleware)

async def main():
    await c2casgiutils.startup(app)
    transport = httpx.ASGITransport(app=app)
    sampled = []
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for number in range(int(sys.argv[1])):
            headers = {"traceparent": f"00-{number + 1:032x}-00f067aa0ba902b7-01"} if sys.argv[2] == "1" else {}
            sampled.append((await client.get("/hello", headers=headers)).json()["sampled"])
        await client.get("/c2c/health_checks")
    await c2casgiutils.shutdown(app)
    # A second start in the same process (tests, a reloaded app) exports again.
    await c2casgiutils.startup(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        await client.get("/hello", headers={"traceparent": f"00-{999:032x}-00f067aa0ba902b7-01"})
    await c2casgiutils.shutdown(app)
    print(json.dumps(sampled), flush=True)

asyncio.run(main())
os._exit(0)  # no atexit hook (the SDK has one): what reached the collector was sent by shutdown()
"""


def _run_script(receiver: OtlpReceiver, tmp_path: Path, requests: int, traceparent: bool, **env: str) -> list[bool]:
    """EXPORT_SCRIPT in a fresh interpreter exporting to ``receiver``; the sampled flag of each request."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "C2C__"))}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(EXPORT_SCRIPT), str(requests), "1" if traceparent else "0"],
        env={**base, "PYTHONPATH": str(ROOT), "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, **env},
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    sampled: list[bool] = json.loads(result.stdout)
    return sampled


def test_spans_reach_an_otlp_collector_when_shutdown_flushes(tmp_path: Path) -> None:
    """The real SDK and OTLP/HTTP exporter to a local receiver; the batch delay is longer than the run: only the
    flush of ``shutdown()`` sends them."""
    with OtlpReceiver() as receiver:
        sampled = _run_script(
            receiver, tmp_path, 20, True, OTEL_SERVICE_NAME="export-test", OTEL_BSP_SCHEDULE_DELAY="600000"
        )
        assert sampled == [True] * 20
        spans = receiver.spans()
    server = [span for span in spans if span.kind == "SPAN_KIND_SERVER"]
    assert len(server) == 22, [span.name for span in spans]
    assert {span.service for span in spans} == {"export-test"}
    hello = {span.trace_id for span in server if span.name == "GET /hello"}
    assert hello == {f"{n:032x}" for n in (*range(1, 21), 999)}
    assert [span.name for span in server if span.name != "GET /hello"] == ["GET /c2c/health_checks"]
    assert {span.parent_id for span in server if span.name == "GET /hello"} == {"00f067aa0ba902b7"}
    assert not receiver.rejected


def test_sampler_variables_are_the_sdks(tmp_path: Path) -> None:
    """OTEL_TRACES_SAMPLER=traceidratio with 0: new traces are not sampled, nothing exported; the flag says so."""
    with OtlpReceiver() as receiver:
        sampled = _run_script(
            receiver, tmp_path, 5, False, OTEL_TRACES_SAMPLER="traceidratio", OTEL_TRACES_SAMPLER_ARG="0"
        )
        assert sampled == [False] * 5
        # traceidratio is not parent-based: even the restart's request, sent with a sampled parent, is not sampled.
        assert receiver.spans() == []
