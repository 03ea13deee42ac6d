"""Request ids: one id per request, from the caller when well formed, carried to logs, Sentry and httpx.

``RequestIdMiddleware`` (pure ASGI) reads the header named by ``settings.request_id.header``; a missing,
malformed or oversized value is replaced by a fresh random id, so a client cannot inject arbitrary text
into the logs. The id is returned in the response, stored in ``request.state.request_id`` and in a
contextvar that :class:`RequestIdFilter` copies onto every log record, and that :func:`outgoing_headers`
and :func:`async_client` forward to the services we call. Inside it, :class:`~c2casgiutils.tracing.
TraceContextMiddleware` sets the W3C trace context, which the same helpers pass on (``traceparent``).
"""

from __future__ import annotations

import contextvars
import functools
import logging
import re
import sys
import uuid
from typing import TYPE_CHECKING, Any

from c2casgiutils import config
from c2casgiutils.tracing import TraceContextMiddleware, add_trace_headers, log_ids, trace_context_var, trace_headers

if TYPE_CHECKING:
    import httpx
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

_LOGGER = logging.getLogger(__name__)

# Letters, digits and the separators used by common id schemes (UUIDs, trace ids, "svc:abc.1").
_WELL_FORMED = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]*")

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("c2c_request_id", default=None)


def get_request_id() -> str | None:
    """The id of the request being handled, or None outside a request."""
    return request_id_var.get()


def new_request_id() -> str:
    """A fresh random id (32 hexadecimal characters)."""
    return uuid.uuid4().hex


def is_well_formed(value: str) -> bool:
    """Whether a caller's id can be kept: short enough and made of safe characters only."""
    return 0 < len(value) <= config.settings.request_id.max_length and _WELL_FORMED.fullmatch(value) is not None


def _header_value(scope: Scope, header_name: bytes) -> str | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == header_name:
            try:
                return bytes(value).decode("ascii")
            except UnicodeDecodeError:
                return None
    return None


def _active_sentry() -> Any:
    """The sentry_sdk module when it is imported and initialised, else None."""
    # Sentry can only be initialised once imported: no import (and no cost) for services without it.
    sentry_sdk = sys.modules.get("sentry_sdk")
    if sentry_sdk is not None and sentry_sdk.get_client().is_active():
        return sentry_sdk
    return None


@functools.lru_cache(maxsize=8)
def _encoded_header_name(header: str) -> bytes:
    return header.lower().encode("latin-1")


class RequestIdMiddleware:
    """Give every HTTP and WebSocket request an id and return it in the response header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # The trace context is set here too (inline: no ASGI layer of its own), so both ids are in every log line.
        self._trace = TraceContextMiddleware(app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        header_name = _encoded_header_name(config.settings.request_id.header)
        given = _header_value(scope, header_name)
        request_id = given if given is not None and is_well_formed(given) else new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        encoded = request_id.encode("ascii")

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(name, value) for name, value in message.get("headers", ()) if name.lower() != header_name]
                headers.append((header_name, encoded))
                message = {**message, "headers": headers}
            await send(message)

        token = request_id_var.set(request_id)
        trace_token = self._trace.enter(scope)
        # No token: tracing is off (the app directly), or spans are exported (the span opened around the app).
        inner = self.app if trace_token is not None or not self._trace.enabled else self._trace
        try:
            sentry_sdk = _active_sentry()
            if sentry_sdk is None:
                await inner(scope, receive, send_with_id)
            else:
                # A scope of its own, so the tag never leaks to other requests of the process.
                with sentry_sdk.isolation_scope() as sentry_scope:
                    sentry_scope.set_tag("request_id", request_id)
                    await inner(scope, receive, send_with_id)
        finally:
            if trace_token is not None:
                trace_context_var.reset(trace_token)
            request_id_var.reset(token)


class RequestIdFilter(logging.Filter):
    """Put ``request_id``, ``trace_id`` and ``span_id`` on every record (None outside a request), for text formats.

    Attach it to handlers (``handler.addFilter``) so records of every logger get the fields (``%(trace_id)s``).
    The JSON formatter needs no filter: it reads them itself.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        if getattr(record, "trace_id", None) is None:
            record.trace_id, record.span_id = log_ids()
        return True


def outgoing_headers(headers: dict[str, str] | None = None) -> dict[str, str]:
    """``headers`` plus the current request id and trace context, to pass along on a call to another service.

    A ``traceparent`` or ``tracestate`` given in ``headers`` wins.
    """
    given = {name.lower() for name in headers or ()}
    result = {name: value for name, value in trace_headers().items() if name not in given}
    result.update(headers or {})
    request_id = request_id_var.get()
    if request_id is not None:
        result[config.settings.request_id.header] = request_id
    return result


async def _add_request_id(request: httpx.Request) -> None:
    request_id = request_id_var.get()
    header = config.settings.request_id.header
    if request_id is not None and header not in request.headers:
        request.headers[header] = request_id


def async_client(**kwargs: Any) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` that forwards the current request id and trace context on every request it sends.

    They are read when each request is sent, so one client can be shared by all requests; a header the caller
    sets wins.
    """
    import httpx  # noqa: PLC0415  # imported here so the module stays light for logging configs

    hooks: dict[str, list[Any]] = {key: list(value) for key, value in kwargs.pop("event_hooks", {}).items()}
    hooks.setdefault("request", [])[:0] = [_add_request_id, add_trace_headers]
    return httpx.AsyncClient(event_hooks=hooks, **kwargs)
