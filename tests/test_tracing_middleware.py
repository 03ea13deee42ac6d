"""The trace context of a request (no span export): kept or restarted by the W3C rules and the trust setting, in
every JSON log line (uvicorn's access line included, with the formatter alone), in problem+json errors, and sent
on by the httpx helpers."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, HTTPException, Request
from starlette.types import Receive, Scope, Send

from c2casgiutils import errors, request_id, tracing
from c2casgiutils.logs import RequestIdFilter
from tests.tracing_fixtures import TracingService, json_lines

_LOGGER = logging.getLogger("tracing_test")
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
HEX32 = re.compile("[0-9a-f]{32}")
HEX16 = re.compile("[0-9a-f]{16}")


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """JSON lines of the test's logger, written by the formatter alone (no filter)."""
    with json_lines(_LOGGER) as stream:
        yield stream


def _app(**options: Any) -> FastAPI:
    app = FastAPI()

    @app.get("/context")
    async def context(request: Request) -> dict[str, Any]:
        _LOGGER.info("handling context")
        current = tracing.get_trace_context()
        assert current is not None
        assert request.state.trace_context is current
        return {
            "trace_id": current.trace_id,
            "span_id": current.span_id,
            "parent_id": current.parent_id,
            "sampled": current.sampled,
            "tracestate": current.tracestate,
            "outgoing": request_id.outgoing_headers(),
        }

    app.add_middleware(tracing.TraceContextMiddleware, **options)
    return app


async def _get(app: Any, headers: Any = None, client: tuple[str, int] = ("127.0.0.1", 5000)) -> dict[str, Any]:
    transport = httpx.ASGITransport(app=app, client=client)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        response = await http.get("/context", headers=headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_a_request_without_context_starts_a_sampled_trace() -> None:
    first = await _get(_app())
    second = await _get(_app())
    assert HEX32.fullmatch(first["trace_id"])
    assert HEX16.fullmatch(first["span_id"])
    assert first["parent_id"] is None
    assert first["sampled"] is True
    assert first["trace_id"] != second["trace_id"]
    assert first["outgoing"]["traceparent"] == f"00-{first['trace_id']}-{first['span_id']}-01"
    assert "tracestate" not in first["outgoing"]


def _request_id_app() -> FastAPI:
    """The ``/context`` app with RequestIdMiddleware instead of TraceContextMiddleware: the context set inline."""
    app = _app(enabled=False)
    app.add_middleware(request_id.RequestIdMiddleware)
    return app


@pytest.mark.parametrize("trust", ["always", "never", "trusted_proxies"])
@pytest.mark.parametrize("headers", [None, {"tracestate": "rojo=1"}, {"traceparent": "junk", "tracestate": "rojo=1"}])
async def test_request_id_middleware_starts_the_same_trace_as_the_trace_context_middleware(
    settings: Any, trust: str, headers: dict[str, str] | None
) -> None:
    """Without a traceparent RequestIdMiddleware starts the trace inline (with an invalid one, through the policy):
    the same context as TraceContextMiddleware's, whatever the trust setting, and gone after the request."""
    settings.tracing.trust_inbound = trust
    results = [await _get(app, headers, client=("203.0.113.9", 4000)) for app in (_request_id_app(), _app())]
    for result in results:
        assert HEX32.fullmatch(result["trace_id"])
        assert HEX16.fullmatch(result["span_id"])
        assert (result["parent_id"], result["sampled"], result["tracestate"]) == (None, True, None)
        assert result["outgoing"]["traceparent"] == f"00-{result['trace_id']}-{result['span_id']}-01"
        assert "tracestate" not in result["outgoing"]
    assert results[0]["trace_id"] != results[1]["trace_id"]
    assert tracing.get_trace_context() is None


async def test_a_valid_context_is_continued_with_a_new_span() -> None:
    result = await _get(_app(), {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-00", "tracestate": "rojo=00f067aa0ba902b7"})
    assert result["trace_id"] == TRACE_ID
    assert result["parent_id"] == PARENT_ID
    assert result["span_id"] not in (PARENT_ID, "0" * 16)
    assert result["sampled"] is False
    assert result["outgoing"] == {
        "traceparent": f"00-{TRACE_ID}-{result['span_id']}-00",
        "tracestate": "rojo=00f067aa0ba902b7",
    }


async def test_an_invalid_context_restarts_the_trace_and_drops_tracestate() -> None:
    result = await _get(_app(), {"traceparent": f"ff-{TRACE_ID}-{PARENT_ID}-01", "tracestate": "rojo=1"})
    assert result["trace_id"] != TRACE_ID
    assert result["parent_id"] is None
    assert result["tracestate"] is None
    assert "tracestate" not in result["outgoing"]


async def test_two_traceparent_lines_restart_the_trace() -> None:
    headers = [("traceparent", TRACEPARENT), ("traceparent", f"00-{'1' * 32}-{PARENT_ID}-01")]
    result = await _get(_app(), headers)
    assert result["trace_id"] not in (TRACE_ID, "1" * 32)


@pytest.mark.parametrize(
    ("trust", "peer", "kept"),
    [
        ("always", "203.0.113.9", True),
        ("never", "127.0.0.1", False),
        ("trusted_proxies", "127.0.0.1", True),
        ("trusted_proxies", "10.1.2.3", True),
        ("trusted_proxies", "203.0.113.9", False),
        ("trusted_proxies", "::ffff:10.1.2.3", True),
    ],
)
async def test_trust_setting(settings: Any, trust: str, peer: str, kept: bool) -> None:
    settings.tracing.trust_inbound = trust
    settings.proxy_headers.trusted_hosts = ["127.0.0.1", "10.0.0.0/8"]
    result = await _get(_app(), {"traceparent": TRACEPARENT, "tracestate": "a=1"}, client=(peer, 4000))
    assert (result["trace_id"] == TRACE_ID) is kept
    assert (result["tracestate"] == [["a", "1"]]) is kept
    assert (result["parent_id"] == PARENT_ID) is kept


async def test_an_untrusted_peer_with_a_forwarded_client_is_not_trusted_either(settings: Any) -> None:
    """Inside ForwardedHeadersMiddleware the peer is the forwarded client: not a proxy, its context dropped."""
    settings.tracing.trust_inbound = "trusted_proxies"
    app = _app()
    from c2casgiutils import headers as c2c_headers

    outside = c2c_headers.ForwardedHeadersMiddleware(app, trusted_hosts="127.0.0.1", headers_type="x-forwarded")
    result = await _get(outside, {"traceparent": TRACEPARENT, "x-forwarded-for": "198.51.100.4"})
    assert result["trace_id"] != TRACE_ID
    # The documented order: the trace context read outside ForwardedHeadersMiddleware, which sees the proxy.
    app_outside = FastAPI()

    @app_outside.get("/context")
    async def context() -> dict[str, Any]:
        current = tracing.get_trace_context()
        assert current is not None
        return {"trace_id": current.trace_id}

    app_outside.add_middleware(c2c_headers.ForwardedHeadersMiddleware, trusted_hosts="127.0.0.1")
    app_outside.add_middleware(tracing.TraceContextMiddleware)
    kept = await _get(app_outside, {"traceparent": TRACEPARENT, "x-forwarded-for": "198.51.100.4"})
    assert kept["trace_id"] == TRACE_ID


@pytest.mark.parametrize(
    ("setting", "argument", "traced"),
    [(False, None, False), (True, False, False), (False, True, True)],
    ids=["setting-off", "argument-off", "argument-on-over-setting-off"],
)
async def test_disabled_keeps_request_ids_only(
    settings: Any, setting: bool, argument: bool | None, traced: bool
) -> None:
    settings.tracing.enabled = setting
    seen: list[Any] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(tracing.get_trace_context())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    transport = httpx.ASGITransport(app=request_id.RequestIdMiddleware(app, tracing=argument))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        response = await http.get("/", headers={"traceparent": TRACEPARENT})
    assert response.headers["x-request-id"]
    assert [getattr(context, "trace_id", None) for context in seen] == [TRACE_ID if traced else None]


async def test_websocket_requests_get_a_context_too() -> None:
    seen: list[Any] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(tracing.get_trace_context())

    middleware = tracing.TraceContextMiddleware(app)
    await middleware({"type": "websocket", "headers": [(b"traceparent", TRACEPARENT.encode())]}, None, None)  # type: ignore[arg-type]
    await middleware({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert seen[0].trace_id == TRACE_ID
    assert seen[1] is None


async def test_json_log_lines_carry_the_ids_with_the_formatter_alone(json_log: io.StringIO) -> None:
    result = await _get(request_id.RequestIdMiddleware(_app()), {"traceparent": TRACEPARENT, "x-request-id": "r-1"})
    _LOGGER.info("outside a request")
    inside, outside = (json.loads(line) for line in json_log.getvalue().splitlines())
    assert inside["message"] == "handling context"
    assert (inside["request_id"], inside["trace_id"], inside["span_id"]) == ("r-1", TRACE_ID, result["span_id"])
    assert (outside["request_id"], outside["trace_id"], outside["span_id"]) == (None, None, None)


async def test_text_format_gets_the_ids_from_the_filter() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(request_id)s %(trace_id)s %(span_id)s %(message)s"))
    handler.addFilter(RequestIdFilter())
    _LOGGER.addHandler(handler)
    _LOGGER.setLevel(logging.INFO)
    try:
        result = await _get(request_id.RequestIdMiddleware(_app()), {"traceparent": TRACEPARENT, "x-request-id": "r-2"})
    finally:
        _LOGGER.removeHandler(handler)
    assert stream.getvalue() == f"r-2 {TRACE_ID} {result['span_id']} handling context\n"


async def test_a_metrics_middleware_outside_reads_the_exemplar_from_the_scope() -> None:
    """The demo puts PrometheusMiddleware outermost: the context is gone from the contextvar, not from the scope."""
    recorded: list[Any] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    inner = tracing.TraceContextMiddleware(app)

    async def outer(scope: Scope, receive: Receive, send: Send) -> None:
        await inner(scope, receive, send)
        recorded.append(tracing.exemplar_of(scope))

    transport = httpx.ASGITransport(app=outer)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        await http.get("/", headers={"traceparent": TRACEPARENT})
        await http.get("/", headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-00"})
    assert recorded[0] is not None
    assert recorded[0].trace_id == TRACE_ID
    assert recorded[1] is None  # not sampled: no exemplar


def _error_app(client_errors: bool) -> Any:
    app = FastAPI()

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("internal detail")

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        if item_id == 0:
            raise HTTPException(404, "no item 0", headers={"x-reason": "zero"})
        if item_id == 1:
            raise HTTPException(304)
        return {"item": item_id}

    errors.install_error_handlers(app, client_errors=client_errors)
    app.add_middleware(request_id.RequestIdMiddleware)
    return app


async def _error(app: Any, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        return await http.get(path, headers={"traceparent": TRACEPARENT, "x-request-id": "err-7"})


async def test_problem_json_carries_the_trace_id() -> None:
    response = await _error(_error_app(client_errors=False), "/boom")
    assert response.status_code == 500
    assert response.json() == {
        "type": "about:blank",
        "title": "Internal Server Error",
        "status": 500,
        "request_id": "err-7",
        "trace_id": TRACE_ID,
    }


async def test_client_errors_off_leaves_http_exceptions_to_the_framework() -> None:
    app = _error_app(client_errors=False)
    not_found = await _error(app, "/items/0")
    assert not_found.json() == {"detail": "no item 0"}
    invalid = await _error(app, "/items/x")
    assert invalid.status_code == 422
    assert invalid.headers["content-type"] == "application/json"


async def test_client_errors_as_problem_json() -> None:
    app = _error_app(client_errors=True)
    not_found = await _error(app, "/items/0")
    assert not_found.status_code == 404
    assert not_found.headers["content-type"] == "application/problem+json"
    assert not_found.headers["x-reason"] == "zero"
    assert not_found.headers["x-request-id"] == "err-7"
    assert not_found.json() == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": "no item 0",
        "request_id": "err-7",
        "trace_id": TRACE_ID,
    }
    invalid = await _error(app, "/items/x")
    assert invalid.status_code == 422
    assert invalid.headers["content-type"] == "application/problem+json"
    body = invalid.json()
    assert (body["title"], body["status"], body["trace_id"], body["request_id"]) == (
        HTTPStatus(422).phrase,
        422,
        TRACE_ID,
        "err-7",
    )
    assert body["errors"][0]["loc"] == ["path", "item_id"]
    not_modified = await _error(app, "/items/1")
    assert (not_modified.status_code, not_modified.content) == (304, b"")
    unknown_route = await _error(app, "/nowhere")
    assert unknown_route.status_code == 404
    assert unknown_route.json()["trace_id"] == TRACE_ID
    assert (await _error(app, "/items/5")).json() == {"item": 5}


async def test_async_client_sends_the_context_and_the_callers_header_wins() -> None:
    received: list[dict[str, str]] = []

    def downstream(request: httpx.Request) -> httpx.Response:
        received.append({name: request.headers.get(name, "") for name in ("traceparent", "tracestate", "x-request-id")})
        return httpx.Response(200)

    app = FastAPI()

    @app.get("/call")
    async def call() -> dict[str, Any]:
        async with request_id.async_client(transport=httpx.MockTransport(downstream)) as client:
            await client.get("http://downstream/")
            await client.get("http://downstream/", headers={"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-00"})
        current = tracing.get_trace_context()
        assert current is not None
        return {"span_id": current.span_id}

    transport = httpx.ASGITransport(app=request_id.RequestIdMiddleware(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        own = (await http.get("/call", headers={"traceparent": TRACEPARENT, "tracestate": "congo=t61rcWkgMzE"})).json()
    assert received[0] == {
        "traceparent": f"00-{TRACE_ID}-{own['span_id']}-01",
        "tracestate": "congo=t61rcWkgMzE",
        "x-request-id": received[0]["x-request-id"],
    }
    assert received[1]["traceparent"] == "00-" + "1" * 32 + "-" + "2" * 16 + "-00"
    assert tracing.trace_headers() == {}  # outside a request: nothing to send


def test_uvicorn_access_line_carries_the_ids(tmp_path: Path) -> None:
    """A real uvicorn with the JSON formatter alone: the app's line and uvicorn's access line have the ids."""
    service = TracingService(tmp_path).start()
    try:
        response = service.get("/hello", headers={"traceparent": TRACEPARENT, "x-request-id": "access-1"})
        assert response.status_code == 200
        span_id = response.json()["span_id"]
        failed = service.get("/fail", headers={"traceparent": f"00-{'5' * 32}-{PARENT_ID}-01"})
    finally:
        service.stop()
    assert failed.status_code == 500
    assert failed.json()["trace_id"] == "5" * 32
    entries = service.json_logs()
    hello = [entry for entry in entries if entry.get("request_id") == "access-1"]
    assert {entry["logger"] for entry in hello} == {"tracing_service", "uvicorn.access"}
    assert all((entry["trace_id"], entry["span_id"]) == (TRACE_ID, span_id) for entry in hello)
    failure = [entry for entry in entries if entry.get("trace_id") == "5" * 32]
    assert {entry["logger"] for entry in failure} == {"c2casgiutils.errors", "uvicorn.access"}
    error_line = next(entry for entry in failure if entry["logger"] == "c2casgiutils.errors")
    assert "failing on purpose" in error_line["exception"]
