"""A Chio-style body-reading, body-replaying middleware (seed 000) stacked outside and inside ours.

Chio's ASGI middleware reads the request stream once, hashes it and replays it for the framework's body
parser. Whichever side of our middlewares it sits on, the application must receive the same bytes, see both
``request.state.nonce`` (ours) and ``request.state.body_sha256`` (its), and the client must get both sets of
response headers. Both stacks run in uvicorn on free 127.0.0.1 ports and are driven over real HTTP.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from pydantic import BaseModel

from c2casgiutils import headers
from tests.frameworks.body_replay import RECEIPT_HEADER, BodyHashReplayMiddleware
from tests.frameworks.checks import assert_armored
from tests.frameworks.serving import serve

PROXIED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "service.example.com", "X-Forwarded-For": "203.0.113.7"}
ORDERS = ("replay_outside_ours", "replay_inside_ours")


class EchoRequest(BaseModel):
    message: str
    count: int = 1


def create_fastapi_app() -> FastAPI:
    """The seed's hello-fastapi, plus an upload route that reads the raw stream."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/echo")
    async def echo(payload: EchoRequest) -> dict[str, Any]:
        return {"message": payload.message, "count": payload.count}

    @app.post("/upload")
    async def upload(request: Request) -> dict[str, Any]:
        digest = hashlib.sha256()
        length = 0
        async for chunk in request.stream():
            digest.update(chunk)
            length += len(chunk)
        return {
            "sha256": digest.hexdigest(),
            "length": length,
            "state_sha256": request.state.body_sha256,
            "middleware_chunks": request.state.body_chunks,
            "has_nonce": bool(request.state.nonce),
            "url": str(request.url),
            "client": request.client.host if request.client else None,
        }

    return app


# The upload route's page uses a nonce: request.state.nonce is set only where a rule carries CSP_NONCE.
UPLOAD_HEADERS_CONFIG: Any = {
    "upload": {
        "path_match": r"^/upload$",
        "headers": {"Content-Security-Policy": {"script-src": [headers.CSP_NONCE], "frame-ancestors": ["'none'"]}},
    }
}


def build_stack(order: str) -> Any:
    app = create_fastapi_app()
    if order == "replay_outside_ours":
        return BodyHashReplayMiddleware(
            headers.ForwardedHeadersMiddleware(
                headers.ArmorHeaderMiddleware(app, headers_config=UPLOAD_HEADERS_CONFIG), trusted_hosts=["127.0.0.1"]
            )
        )
    return headers.ForwardedHeadersMiddleware(
        headers.ArmorHeaderMiddleware(BodyHashReplayMiddleware(app), headers_config=UPLOAD_HEADERS_CONFIG),
        trusted_hosts=["127.0.0.1"],
    )


@pytest.fixture(scope="module")
def clients() -> Iterator[dict[str, httpx.Client]]:
    with (
        serve(build_stack(ORDERS[0])) as outside,
        serve(build_stack(ORDERS[1])) as inside,
        httpx.Client(base_url=outside, timeout=10) as outside_client,
        httpx.Client(base_url=inside, timeout=10) as inside_client,
    ):
        yield {ORDERS[0]: outside_client, ORDERS[1]: inside_client}


def _chunks(body: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


@pytest.mark.parametrize("order", ORDERS)
def test_chunked_upload_is_replayed_intact(clients: dict[str, httpx.Client], order: str) -> None:
    body = os.urandom(2_000_000)
    expected = hashlib.sha256(body).hexdigest()
    response = clients[order].post("/upload", content=_chunks(body, 65_536), headers=PROXIED)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["sha256"] == expected
    assert result["state_sha256"] == expected
    assert result["length"] == len(body)
    assert result["middleware_chunks"] > 1  # the middleware really read a multi-message body
    assert result["has_nonce"] is True
    assert result["url"] == "https://service.example.com/upload"
    assert result["client"] == "203.0.113.7"
    # Both sets of response headers: the middleware's receipt and our security headers.
    assert response.headers[RECEIPT_HEADER.decode()] == expected
    assert_armored(response, hsts=True)


@pytest.mark.parametrize("order", ORDERS)
def test_pydantic_body_parser_gets_the_replayed_bytes(clients: dict[str, httpx.Client], order: str) -> None:
    response = clients[order].post("/echo", json={"message": "hello", "count": 2})
    assert response.status_code == 200, response.text
    assert response.json() == {"message": "hello", "count": 2}
    assert_armored(response, hsts=False)


@pytest.mark.parametrize("order", ORDERS)
def test_empty_body(clients: dict[str, httpx.Client], order: str) -> None:
    result = clients[order].post("/upload").json()
    assert result["sha256"] == result["state_sha256"] == hashlib.sha256(b"").hexdigest()
    assert result["length"] == 0


def test_both_orders_deliver_the_same_bytes(clients: dict[str, httpx.Client]) -> None:
    body = os.urandom(700_001)
    results = [
        clients[order].post("/upload", content=_chunks(body, 10_000), headers=PROXIED).json()
        | {"middleware_chunks": None}
        for order in ORDERS
    ]
    assert results[0] == results[1]
    assert results[0]["sha256"] == hashlib.sha256(body).hexdigest()
