"""RequestIdMiddleware's response header: the application's own one replaced whatever its case or container."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from c2casgiutils.request_id import RequestIdMiddleware


def _served(headers: Any) -> list[tuple[bytes, bytes]]:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [(b"x-request-id", b"given-1")]}
    asyncio.run(RequestIdMiddleware(app, header="X-Request-ID")(scope, None, send))  # type: ignore[arg-type]
    return list(sent[0]["headers"])


@pytest.mark.parametrize(
    "make", [list, tuple, iter], ids=["list", "tuple", "iterator"]
)
def test_the_applications_header_is_replaced(make: Any) -> None:
    own = [(b"content-type", b"text/plain"), (b"X-Request-ID", b"from-the-app"), (b"x-other", b"1")]
    assert _served(make(own)) == [(b"content-type", b"text/plain"), (b"x-other", b"1"), (b"x-request-id", b"given-1")]


def test_other_headers_of_the_same_length_stay() -> None:
    own = [(b"content-type", b"text/plain"), (b"x-request-ix", b"kept")]  # 12 bytes each, like x-request-id
    assert _served(own) == [*own, (b"x-request-id", b"given-1")]
