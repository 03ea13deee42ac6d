"""The trace context of the request being handled: its ids, in a contextvar read by logs, errors, httpx and metrics."""

from __future__ import annotations

import contextvars
import sys
from typing import TYPE_CHECKING, Any, NamedTuple

from c2casgiutils._random_tokens import TokenPool
from c2casgiutils.tracing._w3c import format_traceparent, format_tracestate

if TYPE_CHECKING:
    from starlette.types import Scope

STATE_KEY = "trace_context"
"""Where the context is kept in ``scope["state"]`` (``request.state.trace_context``), for outer middlewares."""

# Ids from batches of os.urandom (one system call per 256 ids, dropped by a forked child: workers never repeat
# each other's ids), never all zeros (invalid in W3C Trace Context). Popping one costs a fraction of formatting
# random bits.
_TRACE_IDS = TokenPool(size=16, nonzero=True)
_SPAN_IDS = TokenPool(size=8, nonzero=True)


def new_trace_id() -> str:
    """A random trace id: 32 lowercase hexadecimal characters, never all zeros."""
    try:
        return _TRACE_IDS.pop()
    except IndexError:
        return _TRACE_IDS.refill_and_pop()


def new_span_id() -> str:
    """A random span id: 16 lowercase hexadecimal characters, never all zeros."""
    try:
        return _SPAN_IDS.pop()
    except IndexError:
        return _SPAN_IDS.refill_and_pop()


class TraceContext(NamedTuple):
    """Where a request stands in its trace: ``trace_id``, this service's ``span_id`` for it, the caller's span.

    ``span_id`` is the parent id of every call this request makes to other services; ``parent_id`` is the
    caller's span (None when the trace started here); ``sampled`` is the flag passed on; ``tracestate`` holds
    the members received, passed on unchanged. Immutable (a named tuple: built in C on each request).
    """

    trace_id: str
    span_id: str
    sampled: bool
    parent_id: str | None = None
    tracestate: tuple[tuple[str, str], ...] | None = None

    @property
    def traceparent(self) -> str:
        """The ``traceparent`` to send to the services this request calls."""
        return format_traceparent(self.trace_id, self.span_id, self.sampled)

    def headers(self) -> dict[str, str]:
        """``traceparent``, and ``tracestate`` when one was received: the headers of an outgoing call."""
        headers = {"traceparent": self.traceparent}
        if self.tracestate:
            headers["tracestate"] = format_tracestate(self.tracestate)
        return headers


_new_tuple = tuple.__new__


def new_trace() -> TraceContext:
    """A trace that starts here: new random ids, sampled (so its exemplars are kept and the services it calls record
    it). Called on each request without a usable ``traceparent``: the pools' pops inline, the tuple built in C."""
    try:
        trace_id = _TRACE_IDS.pop()
    except IndexError:
        trace_id = _TRACE_IDS.refill_and_pop()
    try:
        span_id = _SPAN_IDS.pop()
    except IndexError:
        span_id = _SPAN_IDS.refill_and_pop()
    return _new_tuple(TraceContext, (trace_id, span_id, True, None, None))


trace_context_var: contextvars.ContextVar[TraceContext | None] = contextvars.ContextVar(
    "c2c_trace_context", default=None
)


def get_trace_context() -> TraceContext | None:
    """The trace context of the request being handled, or None outside a request."""
    return trace_context_var.get()


def log_ids() -> tuple[str | None, str | None]:
    """(trace_id, span_id) for a log line: of the request being handled, else of the current OpenTelemetry span.

    The second case covers code that runs in a span of another instrumentation; OpenTelemetry is only read when
    something else imported it (no import here).
    """
    context = trace_context_var.get()
    if context is not None:
        return context.trace_id, context.span_id
    otel_trace = sys.modules.get("opentelemetry.trace")
    if otel_trace is not None:
        span_context = otel_trace.get_current_span().get_span_context()
        if span_context.is_valid:
            return f"{span_context.trace_id:032x}", f"{span_context.span_id:016x}"
    return None, None


def exemplar_of(scope: Scope) -> TraceContext | None:
    """The trace context to attach to a request's metrics as an exemplar: only a sampled one.

    Read from the contextvar, else from the scope's state (a metrics middleware outside the one that set it).
    """
    context = trace_context_var.get()
    if context is None:
        state: Any = scope.get("state")
        context = state.get(STATE_KEY) if isinstance(state, dict) else None
    return context if context is not None and context.sampled else None
