"""A shallot (seed 002) application: dict requests and responses, ring-style middlewares, our ASGI middlewares.

shallot has no mount: PathDispatcher puts c2casgiutils.app at /c2c next to it. shallot speaks the lifespan
protocol itself (its ``on_start`` result becomes ``request["config"]``), so the events are forwarded to it.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import AsyncIterator
from typing import Any

from shallot import build_server, standard_not_found
from shallot.middlewares import apply_middleware, wrap_json, wrap_routes
from shallot.response import json as json_response

import c2casgiutils
from c2casgiutils import headers
from tests.frameworks.checks import PAGE_HEADERS_CONFIG, page_html
from tests.frameworks.dispatch import PathDispatcher
from tests.frameworks.lifecycle import EVENTS

STREAM_RELEASE = threading.Event()
"""Set by the test once it got the first chunk of /stream: the second chunk is produced only then."""


async def on_start(_context: Any) -> dict[str, Any]:
    await c2casgiutils.startup()
    EVENTS.append("shallot:startup")
    return {"started_by": "shallot lifespan"}


async def on_stop(_context: Any) -> None:
    await c2casgiutils.shutdown()
    EVENTS.append("shallot:shutdown")


async def hello(request: dict[str, Any]) -> dict[str, Any]:
    response = json_response(
        {
            "scheme": request.get("scheme"),
            "host": request["headers"].get("host"),
            "server": list(request["server"]),
            "client": request["client"][0],
            "config": request["config"],
            "nonce": request.get("state", {}).get("nonce"),
        }
    )
    # A header set by the application with another case: ArmorHeaderMiddleware must replace it, not add one.
    response["headers"]["X-Frame-Options"] = "SAMEORIGIN"
    return response


async def page(request: dict[str, Any]) -> dict[str, Any]:
    body = page_html(request["state"]["nonce"]).encode()
    return {"status": 200, "body": body, "headers": {"content-type": "text/html; charset=utf-8"}}


async def echo(request: dict[str, Any]) -> dict[str, Any]:
    body: bytes = request["body"]
    return json_response({"sha256": hashlib.sha256(body).hexdigest(), "length": len(body), "json": request["json"]})


async def stream(_request: dict[str, Any]) -> dict[str, Any]:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"first\n"
        released = await asyncio.to_thread(STREAM_RELEASE.wait, 5)
        yield b"second\n" if released else b"timeout\n"

    return {"status": 200, "stream": chunks(), "headers": {"content-type": "text/plain"}}


ROUTES = [
    ("/hello", ["GET"], hello),
    ("/page", ["GET"], page),
    ("/echo", ["POST"], echo),
    ("/stream", ["GET"], stream),
]


def create_asgi_app() -> Any:
    handler = apply_middleware(wrap_routes(ROUTES), wrap_json())(standard_not_found)
    server = build_server(handler, on_start=on_start, on_stop=on_stop)
    application: Any = PathDispatcher(server, {"/c2c": c2casgiutils.app})
    application = headers.ArmorHeaderMiddleware(application, headers_config=PAGE_HEADERS_CONFIG)
    return headers.ForwardedHeadersMiddleware(
        application, trusted_hosts=["127.0.0.1"], fields="for,proto,host,port,prefix"
    )
