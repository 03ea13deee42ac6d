"""Follow a request across services: W3C trace context in and out, trace ids in logs and errors, span export.

- :class:`TraceContextMiddleware` (run by ``RequestIdMiddleware``) reads ``traceparent``/``tracestate`` by the
  W3C rules, from the senders ``C2C__TRACING__TRUST_INBOUND`` trusts, or starts a new trace;
- :func:`get_trace_context` gives the request's :class:`TraceContext`; the JSON log formatter writes its
  ``trace_id`` and ``span_id``, the problem+json errors its ``trace_id``;
- :func:`trace_headers` and the httpx helpers of ``request_id`` pass it on to the services called;
- with the ``otel`` extra and ``OTEL_EXPORTER_OTLP_ENDPOINT``, :func:`start_export` (called by
  ``c2casgiutils.startup()``) exports one server span per request, :func:`stop_export` (``shutdown()``) flushes.

See docs/tracing.md.
"""

from c2casgiutils.tracing._context import (
    STATE_KEY,
    TraceContext,
    exemplar_of,
    get_trace_context,
    log_ids,
    new_span_id,
    new_trace_id,
    trace_context_var,
)
from c2casgiutils.tracing._export import start as start_export
from c2casgiutils.tracing._export import stop as stop_export
from c2casgiutils.tracing._fastapi import fastapi_options, mounted_app_options, untrusted_trace_context
from c2casgiutils.tracing._inbound import InboundPolicy, Trust
from c2casgiutils.tracing._middleware import TraceContextMiddleware
from c2casgiutils.tracing._outbound import add_trace_headers, trace_headers
from c2casgiutils.tracing._w3c import Traceparent, parse_traceparent, parse_tracestate

__all__ = [
    "STATE_KEY",
    "InboundPolicy",
    "TraceContext",
    "TraceContextMiddleware",
    "Traceparent",
    "Trust",
    "add_trace_headers",
    "exemplar_of",
    "fastapi_options",
    "get_trace_context",
    "log_ids",
    "mounted_app_options",
    "new_span_id",
    "new_trace_id",
    "parse_traceparent",
    "parse_tracestate",
    "start_export",
    "stop_export",
    "trace_context_var",
    "trace_headers",
    "untrusted_trace_context",
]
