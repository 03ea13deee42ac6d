"""The trace context of the request being handled, as headers of the calls it makes to other services.

The call carries the same trace id, this service's span as the parent id, the sampled flag, and the
``tracestate`` members received. When spans are exported the headers come from OpenTelemetry's configured
propagator and its current span (a client span of another instrumentation, else the request's server span).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from c2casgiutils.tracing import _export
from c2casgiutils.tracing._context import trace_context_var

if TYPE_CHECKING:
    import httpx


def trace_headers() -> dict[str, str]:
    """``traceparent`` (and ``tracestate``) for a call made while handling a request; empty outside a request."""
    context = trace_context_var.get()
    if context is None:
        return {}
    export = _export.ACTIVE
    if export is not None:
        carrier: dict[str, str] = {}
        export.inject(carrier)
        if carrier:
            return carrier
    return context.headers()


async def add_trace_headers(request: httpx.Request) -> None:
    """httpx request hook: add the trace headers the caller did not set itself."""
    for name, value in trace_headers().items():
        if name not in request.headers:
            request.headers[name] = value
