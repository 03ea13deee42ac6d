"""JSON error responses (RFC 9457 ``application/problem+json``) for unhandled exceptions, and optionally 4xx.

``ErrorResponseMiddleware`` is pure ASGI: it catches an exception escaping the application, logs it
(with the request id and trace id), and answers ``500`` with ``{"type", "title", "status", "request_id",
"trace_id"}``. Only a caller with admin access (``auth.has_admin_access``) also gets the exception and its
traceback: the others learn nothing about the code. When the response had already started, the exception is
re-raised so the server aborts the connection (a half-sent body cannot be replaced).

With FastAPI or Starlette call :func:`install_error_handlers`; it adds the middleware inside Starlette's
own error middleware, where route exceptions arrive first. With ``client_errors=True`` it also answers
``HTTPException`` (a 404 raised by a route...) and request validation errors (422) as problem documents.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
import traceback
from collections.abc import Awaitable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from c2casgiutils import auth, config
from c2casgiutils.request_id import request_id_var
from c2casgiutils.tracing import STATE_KEY, trace_context_var

if TYPE_CHECKING:
    from collections.abc import Mapping

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


def _ids(scope: Scope) -> dict[str, Any]:
    """``request_id`` and ``trace_id`` of the request: from the context, else from the scope's state.

    The state still has them when the middlewares that set the context are inside this one and already unwound.
    """
    state = scope.get("state") or {}
    trace = trace_context_var.get() or state.get(STATE_KEY)
    return {
        "request_id": request_id_var.get() or state.get("request_id"),
        "trace_id": trace.trace_id if trace is not None else None,
    }


def problem(status: int, detail: Any = None, scope: Scope | None = None, **extra: Any) -> dict[str, Any]:
    """A problem document (``about:blank`` type, the status's phrase as title) with the request's ids."""
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Client Error" if status < 500 else "Server Error"
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail is not None:
        body["detail"] = detail
    body.update(extra)
    body.update(_ids(scope or {}))
    return body


def problem_body(scope: Scope, error: BaseException, *, with_traceback: bool) -> dict[str, Any]:
    """The problem document of an unhandled exception."""
    body = problem(500, scope=scope)
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


def _problem_response(body: dict[str, Any], headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, default=str).encode(),
        status_code=body["status"],
        headers=headers,
        media_type=PROBLEM_CONTENT_TYPE,
    )


async def http_exception_problem(request: Request, error: Exception) -> Response:
    """Exception handler: an ``HTTPException`` as a problem document, with its status, detail and headers."""
    assert isinstance(error, HTTPException)
    if error.status_code in (204, 304):  # no body allowed: as Starlette's own handler does
        return Response(status_code=error.status_code, headers=error.headers)
    return _problem_response(problem(error.status_code, error.detail, request.scope), error.headers)


async def validation_error_problem(request: Request, error: Exception) -> Response:
    """Exception handler: FastAPI's request validation error as a 422 problem document listing the errors."""
    from fastapi.encoders import jsonable_encoder  # noqa: PLC0415

    errors = jsonable_encoder(getattr(error, "errors", list)())
    return _problem_response(problem(422, "The request is not valid: see errors", request.scope, errors=errors))


def install_error_handlers(app: Starlette, *, client_errors: bool = False) -> None:
    """Make unhandled exceptions of a FastAPI/Starlette app answer ``application/problem+json``.

    ``client_errors``: also answer ``HTTPException`` (any status a route raises on purpose) and FastAPI's request
    validation errors (422, the errors listed in ``errors``) as problem documents, with the request and trace ids.
    Call it before the app starts (like ``add_middleware``); middlewares added afterwards (such as
    ``RequestIdMiddleware``) wrap it, so the error is logged with the request id.
    """
    app.add_middleware(ErrorResponseMiddleware)
    if client_errors:
        from fastapi.exceptions import RequestValidationError  # noqa: PLC0415

        app.add_exception_handler(HTTPException, http_exception_problem)
        app.add_exception_handler(RequestValidationError, validation_error_problem)
