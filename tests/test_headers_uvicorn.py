"""Both middlewares in a real uvicorn process: streaming, request bodies, websockets, proxy headers interplay."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from tests.servers import free_port, wait_port

APP_SOURCE = textwrap.dedent(
    """
    import asyncio

    from fastapi import FastAPI, Request, WebSocket
    from fastapi.responses import Response, StreamingResponse

    from c2casgiutils.headers import CSP_NONCE, ArmorHeaderMiddleware, ForwardedHeadersMiddleware

    app = FastAPI()
    releases: dict[str, asyncio.Event] = {}

    @app.get("/stream")
    async def stream(token: str) -> StreamingResponse:
        release = releases.setdefault(token, asyncio.Event())

        async def chunks():
            yield b"first\\n"
            # The last chunk is produced only once the client has seen the first one and says so.
            await asyncio.wait_for(release.wait(), 20)
            yield b"last\\n"

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.post("/release")
    async def release(token: str) -> dict[str, bool]:
        releases.setdefault(token, asyncio.Event()).set()
        return {"released": True}

    @app.post("/echo")
    async def echo(request: Request) -> Response:
        return Response(await request.body(), media_type="application/octet-stream")

    @app.get("/where", name="where")
    async def where(request: Request) -> dict[str, object]:
        return {
            "url_for": str(request.url_for("where")),
            "client": request.client.host if request.client else None,
            "nonce": request.state.nonce,
        }

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        text = await websocket.receive_text()
        await websocket.send_text(f"{websocket.url.scheme} {websocket.client.host} {text}")
        await websocket.close()

    NONCE_CSP = {"Content-Security-Policy": {"script-src": [CSP_NONCE]}}
    app.add_middleware(ArmorHeaderMiddleware, headers_config={"where": {"path_match": "^/where", "headers": NONCE_CSP}})
    app.add_middleware(ForwardedHeadersMiddleware, trusted_hosts="127.0.0.1", fields="for,proto,host,prefix")
    """
)


class Uvicorn:
    def __init__(self, app_dir: Path, *options: str) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "uvicorn", "headers_app:app", "--app-dir", str(app_dir)]
            + ["--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning", *options],
            env={**os.environ, "C2C__PROMETHEUS__PORT": ""},
        )
        try:
            wait_port(self.port, timeout=30)
        except TimeoutError:
            self.close()
            raise

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("headers_app")
    (directory / "headers_app.py").write_text(APP_SOURCE)
    return directory


@pytest.fixture(scope="module")
def server(app_dir: Path) -> Iterator[Uvicorn]:
    """Uvicorn without --proxy-headers: ForwardedHeadersMiddleware sees the direct peer."""
    running = Uvicorn(app_dir, "--no-proxy-headers")
    yield running
    running.close()


def test_first_chunk_arrives_before_the_last_is_produced(server: Uvicorn) -> None:
    token = uuid.uuid4().hex
    with (
        httpx.Client(base_url=server.url, timeout=10) as client,
        client.stream("GET", "/stream", params={"token": token}) as response,
    ):
        assert response.headers["x-frame-options"] == "DENY"
        chunks = response.iter_raw()
        # Buffering middleware would hold "first" until "last" exists, which needs /release: a read timeout.
        assert next(chunks) == b"first\n"
        assert httpx.post(f"{server.url}/release", params={"token": token}, timeout=10).status_code == 200
        assert b"".join(chunks) == b"last\n"


def test_post_body_is_intact(server: Uvicorn) -> None:
    body = os.urandom(3 * 1024 * 1024)

    def pieces() -> Iterator[bytes]:  # chunked upload: many http.request messages
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    response = httpx.post(f"{server.url}/echo", content=pieces(), timeout=30)
    assert response.status_code == 200
    assert response.content == body
    assert response.headers["x-content-type-options"] == "nosniff"


def test_forwarded_values_and_nonce(server: Uvicorn) -> None:
    response = httpx.get(
        f"{server.url}/where",
        headers={
            "X-Forwarded-For": "203.0.113.7",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "www.example.com",
            "X-Forwarded-Prefix": "/app",
        },
        timeout=10,
    )
    seen = response.json()
    assert seen["url_for"] == "https://www.example.com/app/where"
    assert seen["client"] == "203.0.113.7"
    assert response.headers["content-security-policy"] == f"script-src 'nonce-{seen['nonce']}'"


def test_websocket_passes_through(server: Uvicorn) -> None:
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    with connect(f"ws://127.0.0.1:{server.port}/ws", additional_headers=headers, open_timeout=10) as websocket:
        websocket.send("hello")
        assert websocket.recv(timeout=10) == "wss 203.0.113.9 hello"


def test_uvicorn_proxy_headers_rewrite_the_client_first(app_dir: Path) -> None:
    """With uvicorn's --proxy-headers the middleware checks the client uvicorn derived, not the direct peer."""
    running = Uvicorn(app_dir, "--proxy-headers", "--forwarded-allow-ips", "127.0.0.1")
    try:
        response = httpx.get(
            f"{running.url}/where",
            headers={"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Host": "www.example.com"},
            timeout=10,
        )
    finally:
        running.close()
    seen = json.loads(response.text)
    assert seen["client"] == "203.0.113.7"  # uvicorn rewrote it...
    assert seen["url_for"] == f"http://127.0.0.1:{running.port}/where"  # ...so the host was not trusted
