"""Request ids: kept when well formed, replaced when forged or oversized, in the JSON logs, forwarded by httpx."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from c2casgiutils import request_id
from c2casgiutils.logs import JsonFormatter, RequestIdFilter
from tests.admin_fixtures import UvicornService

_LOGGER = logging.getLogger("request_id_test")


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """JSON log lines of the test's logger, as the production configuration writes them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    _LOGGER.addHandler(handler)
    _LOGGER.setLevel(logging.INFO)
    yield stream
    _LOGGER.removeHandler(handler)


def _app() -> request_id.RequestIdMiddleware:
    app = FastAPI()

    @app.get("/log")
    async def log(request: Request) -> dict[str, str]:
        _LOGGER.info("handling %s", "log", extra={"order": 42})
        return {"state": request.state.request_id, "var": request_id.get_request_id() or ""}

    return request_id.RequestIdMiddleware(app)


async def _get(headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app()), base_url="http://t") as client:
        return await client.get("/log", headers=headers)


async def test_new_id_when_missing(json_log: io.StringIO) -> None:
    response = await _get()
    given_id = response.headers["x-request-id"]
    assert len(given_id) == 32
    assert response.json() == {"state": given_id, "var": given_id}
    entry = json.loads(json_log.getvalue().splitlines()[0])
    assert entry["request_id"] == given_id
    assert entry["message"] == "handling log"
    assert entry["level"] == "INFO"
    assert entry["logger"] == "request_id_test"
    assert entry["order"] == 42
    assert entry["time"].endswith("+00:00")


async def test_well_formed_id_is_kept(json_log: io.StringIO) -> None:
    response = await _get({"X-Request-ID": "edge-1234:abc.def_9"})
    assert response.headers["x-request-id"] == "edge-1234:abc.def_9"
    assert json.loads(json_log.getvalue())["request_id"] == "edge-1234:abc.def_9"


@pytest.mark.parametrize(
    "forged",
    [
        "x" * 129,
        "abc\ndef",
        "abc def",
        '"quoted"',
        "<script>",
        "-leading-dash",
        "id;drop",
        "",
    ],
)
async def test_forged_or_oversized_id_is_replaced(forged: str, json_log: io.StringIO) -> None:
    # Raw ASGI: httpx would refuse some of these values before they reach the service.
    messages: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        messages.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/log",
        "raw_path": b"/log",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"t"), (b"x-request-id", forged.encode())],
        "client": ("127.0.0.1", 1),
        "server": ("t", 80),
    }
    await _app()(scope, receive, send)  # type: ignore[arg-type]
    start = messages[0]
    assert start["status"] == 200
    values = [value.decode() for name, value in start["headers"] if name == b"x-request-id"]  # type: ignore[union-attr]
    assert len(values) == 1
    replaced = values[0]
    assert replaced != forged
    assert len(replaced) == 32
    assert json.loads(json_log.getvalue())["request_id"] == replaced


async def test_setting_changes_header_and_length(settings) -> None:  # type: ignore[no-untyped-def]
    settings.request_id.header = "X-Correlation-ID"
    settings.request_id.max_length = 10
    response = await _get({"X-Correlation-ID": "0123456789"})
    assert response.headers["x-correlation-id"] == "0123456789"
    assert "x-request-id" not in response.headers
    response = await _get({"X-Correlation-ID": "0123456789a"})
    assert response.headers["x-correlation-id"] != "0123456789a"


@hypothesis_settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_only_safe_ids_are_accepted(value: str) -> None:
    if request_id.is_well_formed(value):
        assert 0 < len(value) <= 128
        assert all(character.isascii() and (character.isalnum() or character in "._:-") for character in value)


def test_no_request_id_outside_a_request(json_log: io.StringIO) -> None:
    _LOGGER.warning("outside")
    entry = json.loads(json_log.getvalue())
    assert entry["request_id"] is None
    assert request_id.outgoing_headers({"A": "b"}) == {"A": "b"}


def test_exception_in_one_line(json_log: io.StringIO) -> None:
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        _LOGGER.exception("failed")
    lines = json_log.getvalue().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert "ValueError: bad\nvalue" in entry["exception"]


async def test_lifespan_and_other_scopes_pass_through() -> None:
    seen: list[str] = []

    async def app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        seen.append(scope["type"])
        assert "state" not in scope

    await request_id.RequestIdMiddleware(app)({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan"]


def test_uvicorn_json_logs_and_forwarding() -> None:
    """A real uvicorn with the JSON log config: the id is in the app's and the access log lines."""
    service = UvicornService()
    service.start()
    try:
        response = httpx.get(f"{service.url}/hello", headers={"X-Request-ID": "trace-0001"}, timeout=10)
        assert response.headers["x-request-id"] == "trace-0001"
        forged = httpx.get(f"{service.url}/hello", headers={"X-Request-ID": "y" * 500}, timeout=10)
        forged_replacement = forged.headers["x-request-id"]
        assert forged_replacement != "y" * 500
        chained = httpx.get(f"{service.url}/call-echo", headers={"X-Request-ID": "chain-42"}, timeout=10).json()
        assert chained == {"own": "chain-42", "downstream": {"request_id": "chain-42", "header": "chain-42"}}
    finally:
        service.stop()
    try:
        entries = service.json_logs()
        # The first /hello is the readiness probe of UvicornService.start.
        hello = [entry for entry in entries if entry["message"] == "hello handled"][-2:]
        assert [entry["request_id"] for entry in hello] == ["trace-0001", forged_replacement]
        access = [entry for entry in entries if entry["logger"] == "uvicorn.access" and "/hello" in entry["message"]][
            -2:
        ]
        assert [entry["request_id"] for entry in access] == ["trace-0001", forged_replacement]
        assert "y" * 500 not in service.logs_text()
        assert all({"time", "level", "logger", "message", "request_id"} <= set(entry) for entry in entries)
    finally:
        service.close()


def test_sentry_events_carry_the_request_id() -> None:
    """A real Sentry client with an in-memory transport: the event of a request is tagged with its id."""
    sentry_sdk = pytest.importorskip("sentry_sdk")
    from sentry_sdk.transport import Transport

    envelopes: list[Any] = []

    class MemoryTransport(Transport):
        def capture_envelope(self, envelope: Any) -> None:
            envelopes.append(envelope)

    app = FastAPI()

    @app.get("/report")
    async def report() -> dict[str, str]:
        sentry_sdk.capture_message("something to report")
        return {}

    sentry_sdk.init(dsn="http://public@127.0.0.1:9/1", transport=MemoryTransport, default_integrations=False)
    try:

        async def run() -> None:
            transport = httpx.ASGITransport(app=request_id.RequestIdMiddleware(app))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                await client.get("/report", headers={"X-Request-ID": "sentry-1"})
                await client.get("/report", headers={"X-Request-ID": "sentry-2"})

        asyncio.run(run())
        sentry_sdk.flush(timeout=5)
        sentry_sdk.capture_message("outside any request")
        sentry_sdk.flush(timeout=5)
    finally:
        sentry_sdk.init()  # an inactive client again: no DSN
    events = [item.payload.json for envelope in envelopes for item in envelope.items if item.type == "event"]
    tags = [event.get("tags", {}).get("request_id") for event in events]
    assert tags == ["sentry-1", "sentry-2", None]
