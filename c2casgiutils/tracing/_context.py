"""The trace context of the request being handled: its ids, in a contextvar read by logs, errors, httpx and metrics."""

from __future__ import annotations

import contextvars
import os
import random
import sys
from typing import TYPE_CHECKING, Any

from c2casgiutils.tracing._w3c import format_traceparent, format_tracestate

if TYPE_CHECKING:
    from starlette.types import Scope

STATE_KEY = "trace_context"
"""Where the context is kept in ``scope["state"]`` (``request.state.trace_context``), for outer middlewares."""

# A generator of our own, reseeded in each forked process (workers must not repeat each other's ids) and
# untouched by an application that seeds the ``random`` module. Ids need to be unique, not secret.
_IDS = random.Random()  # noqa: S311
os.register_at_fork(after_in_child=_IDS.seed)
_random_bits = _IDS.getrandbits


def new_trace_id() -> str:
    """A random trace id: 32 lowercase hexadecimal characters, never all zeros."""
    return (_random_bits(128) or 1).to_bytes(16, "big").hex()


def new_span_id() -> str:
    """A random span id: 16 lowercase hexadecimal characters, never all zeros."""
    return (_random_bits(64) or 1).to_bytes(8, "big").hex()


class TraceContext:
    """Where a request stands in its trace: ``trace_id``, this service's ``span_id`` for it, the caller's span.

    ``span_id`` is the parent id of every call this request makes to other services; ``parent_id`` is the
    caller's span (None when the trace started here); ``sampled`` is the flag passed on; ``tracestate`` holds
    the members received, passed on unchanged.
    """

    __slots__ = ("parent_id", "sampled", "span_id", "trace_id", "tracestate")

    def __init__(
        self,
        trace_id: str,
        span_id: str,
        sampled: bool,
        parent_id: str | None = None,
        tracestate: tuple[tuple[str, str], ...] | None = None,
    ) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.sampled = sampled
        self.parent_id = parent_id
        self.tracestate = tracestate

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

    def __repr__(self) -> str:
        return (
            f"TraceContext(trace_id={self.trace_id!r}, span_id={self.span_id!r}, sampled={self.sampled!r}, "
            f"parent_id={self.parent_id!r}, tracestate={self.tracestate!r})"
        )


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
