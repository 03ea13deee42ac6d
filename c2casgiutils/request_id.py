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
import logging
import re
import sys
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from c2casgiutils import config
from c2casgiutils._random_tokens import TokenPool
from c2casgiutils.tracing import (
    STATE_KEY,
    TraceContextMiddleware,
    _export,
    add_trace_headers,
    log_ids,
    trace_context_var,
    trace_headers,
)
from c2casgiutils.tracing._context import new_trace

if TYPE_CHECKING:
    import httpx
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

_LOGGER = logging.getLogger(__name__)

# Letters, digits and the separators used by common id schemes (UUIDs, trace ids, "svc:abc.1").
_WELL_FORMED = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]*")

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("c2c_request_id", default=None)
_IDS = TokenPool(uuid4=True)


def get_request_id() -> str | None:
    """The id of the request being handled, or None outside a request."""
    return request_id_var.get()


def new_request_id() -> str:
    """A fresh random id: a version 4 UUID as 32 hexadecimal characters (from a pool of random bytes)."""
    try:
        return _IDS.pop()
    except IndexError:
        return _IDS.refill_and_pop()


def is_well_formed(value: str, max_length: int | None = None) -> bool:
    """Whether a caller's id can be kept: short enough (``settings.request_id.max_length``) and made of safe
    characters only."""
    if max_length is None:
        max_length = config.settings.request_id.max_length
    return 0 < len(value) <= max_length and _WELL_FORMED.fullmatch(value) is not None


class RequestIdMiddleware:
    """Give every HTTP and WebSocket request an id and return it in the response header.

    The header name and the longest id kept are ``settings.request_id.header`` and ``.max_length``, read when
    the middleware is built (``header`` and ``max_length`` override them). The W3C trace context is set too,
    unless ``settings.tracing.enabled`` (or ``tracing``, which overrides it) is false.
    """

    def __init__(
        self, app: ASGIApp, header: str | None = None, max_length: int | None = None, tracing: bool | None = None
    ) -> None:
        self.app = app
        options = config.settings.request_id
        self.header = options.header if header is None else header
        self.max_length = options.max_length if max_length is None else max_length
        self._header_name = self.header.lower().encode("latin-1")
        # The trace context is set here too (inline: no ASGI layer of its own), so both ids are in every log line.
        self._trace = TraceContextMiddleware(app, enabled=tracing)
        self._tracing = self._trace.enabled

    # Inline on purpose (one header scan, the id pool, the send wrapper): a call per request costs as much as its work.
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: PLR0912, PLR0915
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        header_name = self._header_name
        name_length = len(header_name)
        request_id = None
        id_seen = False
        tracing = self._tracing
        parents: list[str] | None = None  # the traceparent and tracestate lines, read in the same scan
        states: list[str] | None = None
        # Inline, one scan for the three headers: a call per request costs as much as the loop. Most headers are
        # none of them: their length alone says so, no lower().
        for name, value in scope.get("headers", ()):
            size = len(name)
            if size == name_length and not id_seen and name.lower() == header_name:
                id_seen = True  # the first line only
                try:
                    given = bytes(value).decode("ascii")
                except UnicodeDecodeError:
                    continue
                if is_well_formed(given, self.max_length):
                    request_id = given
            elif size == 11 and tracing and name.lower() == b"traceparent":
                if parents is None:
                    parents = []
                parents.append(value.decode("latin-1"))
            elif size == 10 and tracing and name.lower() == b"tracestate":
                if states is None:
                    states = []
                states.append(value.decode("latin-1"))
        if request_id is None:
            try:
                request_id = _IDS.pop()
            except IndexError:
                request_id = _IDS.refill_and_pop()
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state["request_id"] = request_id
        header = (header_name, request_id.encode("ascii"))

        # A plain function returning send's awaitable: one coroutine less per message than an ``async def``.
        def send_with_id(message: Message) -> Awaitable[None]:
            if message["type"] == "http.response.start":
                headers = message.get("headers", ())
                if type(headers) is not list:  # read twice below: an iterator would be used up by the first pass
                    headers = list(headers)
                # The application's own header of that name is replaced. Outside the security headers a response
                # has a dozen headers: only those of the same length are lowered and compared.
                for item in headers:
                    if len(item[0]) == name_length and item[0].lower() == header_name:
                        headers = [item for item in headers if item[0].lower() != header_name]
                        break
                message["headers"] = [*headers, header]
            return send(message)

        token = request_id_var.set(request_id)
        if not tracing:
            trace_token = None
            inner = self.app
        elif parents is None and _export.ACTIVE is None:
            # The usual request, inline: no traceparent (a tracestate alone counts for nothing), no span export: a
            # new sampled trace whoever sent it, as ``InboundPolicy.context`` answers.
            context = new_trace()
            state[STATE_KEY] = context
            trace_token = trace_context_var.set(context)
            inner = self.app
        else:
            trace_token = self._trace.enter(scope, (parents, states))
            # No token: spans are exported (the span is opened around the app).
            inner = self.app if trace_token is not None else self._trace
        try:
            # Sentry can only be initialised once imported: no import (and no cost) for services without it.
            sentry_sdk = sys.modules.get("sentry_sdk")
            if sentry_sdk is None or not sentry_sdk.get_client().is_active():
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
