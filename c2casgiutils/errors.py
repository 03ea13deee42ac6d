"""JSON error responses (RFC 9457 ``application/problem+json``) for unhandled exceptions.

``ErrorResponseMiddleware`` is pure ASGI: it catches an exception escaping the application, logs it
(with the request id), and answers ``500`` with ``{"type", "title", "status", "request_id"}``. Only a
caller with admin access (``auth.has_admin_access``) also gets the exception and its traceback: the
others learn nothing about the code. When the response had already started, the exception is re-raised
so the server aborts the connection (a half-sent body cannot be replaced).

With FastAPI or Starlette call :func:`install_error_handlers`; it adds the middleware inside Starlette's
own error middleware, where route exceptions arrive first.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
import traceback
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from starlette.requests import ClientDisconnect, Request

from c2casgiutils import auth, config
from c2casgiutils.request_id import request_id_var

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

_LOGGER = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
# nginx's "client closed request": a client that left while its body was read is not a server error.
CLIENT_CLOSED_REQUEST = 499


_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def _printable(text: Any) -> str:
    """``text`` with control characters escaped: a path like ``/a%0Afake`` must not forge a log line."""
    return _CONTROL_CHARACTERS.sub(lambda match: f"\\x{ord(match[0]):02x}", str(text))


async def _is_admin(scope: Scope) -> bool:
    """Whether the caller has admin access; any failure of the check counts as no."""
    try:
        answer: Any = auth.has_admin_access(Request(scope))
        if inspect.isawaitable(answer):
            answer = await answer
    except Exception:  # a broken auth check must not turn one error into two
        _LOGGER.warning("Could not check admin access while reporting an error", exc_info=True)
        return False
    return bool(answer)


def problem_body(scope: Scope, error: BaseException, *, with_traceback: bool) -> dict[str, Any]:
    """The problem document of an unhandled exception."""
    request_id = request_id_var.get() or scope.get("state", {}).get("request_id")
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": "Internal Server Error",
        "status": 500,
        "request_id": request_id,
    }
    if with_traceback:
        body["detail"] = f"{type(error).__qualname__}: {error}"
        body["traceback"] = traceback.format_exception(error)
    return body


class ErrorResponseMiddleware:
    """Answer unhandled exceptions with ``application/problem+json``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response_started = False

        # A plain function returning send's awaitable: one coroutine less per message than an ``async def``.
        def watch_send(message: Message) -> Awaitable[None]:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            return send(message)

        try:
            await self.app(scope, receive, watch_send)
        except ClientDisconnect:
            _LOGGER.debug("Client disconnected during %s %s", scope.get("method"), _printable(scope.get("path", "")))
            if not response_started:  # for the access log and the metrics: a client error, no body
                await send({"type": "http.response.start", "status": CLIENT_CLOSED_REQUEST, "headers": []})
                await send({"type": "http.response.body", "body": b""})
        except Exception as error:
            _LOGGER.exception("Unhandled exception on %s %s", scope.get("method"), _printable(scope.get("path", "")))
            if response_started:
                raise
            body = problem_body(scope, error, with_traceback=await _is_admin(scope))
            encoded = json.dumps(body).encode()
            headers = [
                (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
                (b"content-length", str(len(encoded)).encode()),
                (b"cache-control", b"no-store"),
            ]
            if body["request_id"]:
                # Also set when the request-id middleware is inside this one and already unwound.
                headers.append(
                    (config.settings.request_id.header.lower().encode("latin-1"), body["request_id"].encode())
                )
            await send({"type": "http.response.start", "status": 500, "headers": headers})
            await send({"type": "http.response.body", "body": encoded})


def install_error_handlers(app: Starlette) -> None:
    """Make unhandled exceptions of a FastAPI/Starlette app answer ``application/problem+json``.

    Call it before the app starts (like ``add_middleware``); middlewares added afterwards (such as
    ``RequestIdMiddleware``) wrap it, so the error is logged with the request id.
    """
    app.add_middleware(ErrorResponseMiddleware)
