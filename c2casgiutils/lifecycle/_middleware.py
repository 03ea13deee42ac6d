"""``DrainMiddleware``: while this process drains, every HTTP answer says ``Connection: close``.

A keep-alive client (a load balancer's pool, a Kubernetes Service's client that keeps its connection to the
pod) goes on sending on its open connection after the endpoint was removed; the header makes uvicorn close
the connection after the answer, so that the next request opens a new one, which lands on another instance.
Pure ASGI: it only adds one header to ``http.response.start``, decided when the answer starts, so a request
in flight when SIGTERM comes gets it too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from c2casgiutils.lifecycle import _drain

_CLOSE = (b"connection", b"close")


class DrainMiddleware:
    """Add ``Connection: close`` to the HTTP answers of a draining process (see ``c2casgiutils.lifecycle``)."""

    def __init__(self, app: ASGIApp, drain: _drain.ProcessDrain | None = None) -> None:
        from c2casgiutils.lifecycle import _drain  # noqa: PLC0415 - the one process-wide drain flag

        self.app = app
        self.drain = drain or _drain.PROCESS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        drain = self.drain

        # A plain function returning send's awaitable: one coroutine less per message than an ``async def``.
        def send_closing(message: Message) -> Awaitable[None]:
            if message["type"] == "http.response.start" and drain.draining:
                headers = [(name, value) for name, value in message.get("headers", ()) if name.lower() != b"connection"]
                headers.append(_CLOSE)
                message = {**message, "headers": headers}
            return send(message)

        await self.app(scope, receive, send_closing)
