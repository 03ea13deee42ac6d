"""Unhandled exceptions answer application/problem+json with the request id; traceback for admins only."""

from __future__ import annotations

import json
import logging
import re

import httpx
import pytest
from fastapi import FastAPI, HTTPException
from fastapi.responses import StreamingResponse

from c2casgiutils import request_id
from c2casgiutils.errors import ErrorResponseMiddleware, install_error_handlers
from tests.admin_fixtures import SECRET, UvicornService


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals: db password is hunter2")

    @app.get("/not-found")
    async def not_found() -> None:
        raise HTTPException(404, "no such thing")

    @app.get("/half")
    async def half() -> StreamingResponse:
        async def body():  # type: ignore[no-untyped-def]
            yield b"first chunk"
            raise RuntimeError("failed mid-stream")

        return StreamingResponse(body())

    install_error_handlers(app)
    app.add_middleware(request_id.RequestIdMiddleware)
    return app


@pytest.fixture
def client(settings):  # type: ignore[no-untyped-def]
    settings.auth.secret = SECRET
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=_app(), raise_app_exceptions=False), base_url="http://t")


async def test_problem_json_for_anonymous(client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="c2casgiutils.errors"):
        response = await client.get("/boom", headers={"X-Request-ID": "err-1"})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-request-id"] == "err-1"
    body = response.json()
    assert re.fullmatch("[0-9a-f]{32}", body.pop("trace_id"))
    assert body == {
        "type": "about:blank",
        "title": "Internal Server Error",
        "status": 500,
        "request_id": "err-1",
    }
    assert "hunter2" not in response.text
    # The operator finds the traceback in the log, by the id the caller reports.
    (record,) = [record for record in caplog.records if record.name == "c2casgiutils.errors"]
    assert record.exc_info is not None
    assert "/boom" in record.getMessage()


async def test_traceback_for_admin(client: httpx.AsyncClient) -> None:
    response = await client.get("/boom", headers={"X-API-Key": SECRET})
    body = response.json()
    assert response.status_code == 500
    assert body["request_id"] == response.headers["x-request-id"]
    assert body["detail"] == "RuntimeError: secret internals: db password is hunter2"
    assert any("raise RuntimeError" in line for line in body["traceback"])


async def test_wrong_secret_gets_no_traceback(client: httpx.AsyncClient) -> None:
    response = await client.get("/boom", headers={"X-API-Key": "wrong"})
    assert "traceback" not in response.json()


async def test_http_exceptions_untouched(client: httpx.AsyncClient) -> None:
    response = await client.get("/not-found")
    assert response.status_code == 404
    assert response.json() == {"detail": "no such thing"}


async def test_started_response_is_aborted_not_replaced() -> None:
    """A half-sent body cannot become a problem document: the exception goes on to the server."""
    app = _app()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        with pytest.raises(RuntimeError, match="failed mid-stream"):
            await client.get("/half")


async def test_pure_asgi_app() -> None:
    """Works around any ASGI app, not only FastAPI."""

    async def bare(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        raise KeyError("missing")

    app = request_id.RequestIdMiddleware(ErrorResponseMiddleware(bare))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.get("/anything")
    assert response.status_code == 500
    assert response.json()["request_id"] == response.headers["x-request-id"]


def test_real_uvicorn_error_log_has_the_request_id() -> None:
    service = UvicornService()
    service.start()
    try:
        response = httpx.get(f"{service.url}/boom", headers={"X-Request-ID": "boom-77"}, timeout=10)
    finally:
        service.stop()
    try:
        assert response.status_code == 500
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["request_id"] == "boom-77"
        errors = [entry for entry in service.json_logs() if entry["level"] == "ERROR"]
        assert len(errors) == 1, errors
        assert errors[0]["request_id"] == "boom-77"
        assert "the boom route always fails" in errors[0]["exception"]
        assert json.dumps(errors[0])  # one JSON object
    finally:
        service.close()
