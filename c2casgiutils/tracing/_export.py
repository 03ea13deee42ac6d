"""Span export with the ``otel`` extra: OpenTelemetry's SDK and OTLP/HTTP exporter, one server span per request.

:func:`start` runs in each worker (from ``c2casgiutils.startup()``, after uvicorn forked or spawned it) when
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set and ``OTEL_SDK_DISABLED`` is not
``true``. It sets the SDK's tracer provider (service name from ``OTEL_SERVICE_NAME``, sampler from
``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG``) with a batch processor and the OTLP/HTTP exporter, unless
the process already has a provider (``opentelemetry-instrument``, FastAPI's own auto-configuration): then spans go
to that one. :func:`stop` flushes it, from ``c2casgiutils.shutdown()``, so the spans of the requests that were in
flight when the worker was told to stop are sent before it exits (uvicorn re-raises SIGTERM after its shutdown:
the SDK's own ``atexit`` hook may never run). The provider stays usable: a later ``startup()`` in the same process
exports again.

Each HTTP request gets one server span, named ``"{method} {route template}"`` (the template of the metrics'
``handler`` label, read from the router's match once the application has routed the request: the span starts
named by the method alone and is renamed when it ends; the template is computed once per request, whichever of
the span and the metrics asks first). Recent FastAPI releases start a server span of their own, around every
middleware, once a tracer provider is set: the request is then served in that span, and no second one is made.
Otherwise (older FastAPI, another framework, or a request FastAPI was told to exclude) the span is made here, as
the child of the caller's context read by OpenTelemetry's configured propagator (W3C ``traceparent``/``tracestate``
by default), when the inbound policy trusts the sender.

Nothing here imports OpenTelemetry at module level: without the extra this module costs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from c2casgiutils._optional import require
from c2casgiutils._version import __version__
from c2casgiutils.config import SettingsError
from c2casgiutils.tracing._context import STATE_KEY, TraceContext, trace_context_var

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from c2casgiutils.route_templates import RouteTemplates
    from c2casgiutils.tracing._inbound import InboundPolicy

_LOGGER = logging.getLogger(__name__)

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
# A flush sends what the batch processor holds, a few exports each bounded by the exporter's own timeout (10 s by
# default): past this, a collector that accepts and never answers no longer holds the worker's exit.
FLUSH_TIMEOUT = 30.0
_KNOWN_METHODS = frozenset({"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE"})

ACTIVE: ServerSpans | None = None
"""The export of this process, read by the trace-context middleware on each request; None when not exporting."""
_WARNED: set[str] = set()


def _warn_once(key: str, message: str, *args: Any) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        _LOGGER.warning(message, *args)


def endpoint() -> str | None:
    """The OTLP endpoint the environment gives, None when export is not asked for (or disabled)."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    for variable in ENDPOINT_VARIABLES:
        value = os.environ.get(variable, "").strip()
        if value:
            return value
    return None


def check_environment() -> None:
    """Refuse the OpenTelemetry variables that the SDK would silently replace by a default."""
    problems = []
    for variable in ENDPOINT_VARIABLES:
        value = os.environ.get(variable, "").strip()
        if value:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                problems.append(f"{variable} (got {value!r}): expected an http:// or https:// URL")
    sampler = os.environ.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if sampler and sampler not in SAMPLERS:
        problems.append(f"OTEL_TRACES_SAMPLER (got {sampler!r}): expected one of {', '.join(SAMPLERS)}")
    argument = os.environ.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
    if argument and sampler.endswith("traceidratio"):
        try:
            ratio = float(argument)
        except ValueError:
            ratio = -1.0
        if not 0.0 <= ratio <= 1.0:
            problems.append(f"OTEL_TRACES_SAMPLER_ARG (got {argument!r}): expected a ratio between 0 and 1")
    if problems:
        raise SettingsError("Invalid OpenTelemetry settings:\n  " + "\n  ".join(problems))


def start(tracer_provider: Any = None) -> ServerSpans | None:
    """Start exporting the spans of this process (idempotent); None when the environment asks for no export.

    ``tracer_provider``: use this one instead of the global provider (the environment is then not read).
    """
    global ACTIVE  # noqa: PLW0603 - one export per process
    if ACTIVE is not None and ACTIVE.pid == os.getpid() and tracer_provider is None:
        return ACTIVE
    if tracer_provider is None:
        if endpoint() is None:
            return None
        check_environment()
        try:  # the SDK first: without the extra nothing of OpenTelemetry gets imported here
            sdk_trace = require("opentelemetry.sdk.trace", "otel", "Span export (OTEL_EXPORTER_OTLP_ENDPOINT)")
            trace = require("opentelemetry.trace", "otel", "Span export (OTEL_EXPORTER_OTLP_ENDPOINT)")
            export = require("opentelemetry.sdk.trace.export", "otel", "Span export")
            resources = require("opentelemetry.sdk.resources", "otel", "Span export")
            otlp = require("opentelemetry.exporter.otlp.proto.http.trace_exporter", "otel", "Span export")
        except ImportError as error:
            _warn_once("extra", "%s: no span is exported", error)
            return None
        tracer_provider = trace.get_tracer_provider()
        if type(tracer_provider).__name__ in ("ProxyTracerProvider", "NoOpTracerProvider"):
            # Nobody set one: ours. The SDK reads OTEL_SERVICE_NAME (resource), OTEL_TRACES_SAMPLER(_ARG) and the
            # exporter's OTEL_EXPORTER_OTLP_* variables itself.
            tracer_provider = sdk_trace.TracerProvider(resource=resources.Resource.create())
            tracer_provider.add_span_processor(export.BatchSpanProcessor(otlp.OTLPSpanExporter()))
            trace.set_tracer_provider(tracer_provider)
            if trace.get_tracer_provider() is not tracer_provider:  # set by another component meanwhile
                tracer_provider.shutdown()
                tracer_provider = trace.get_tracer_provider()
            else:
                _LOGGER.info("Exporting spans to %s (pid %s)", endpoint(), os.getpid())
    ACTIVE = ServerSpans(tracer_provider)
    return ACTIVE


async def stop() -> None:
    """Send the spans still queued (no-op when not exporting); the requests that follow are not traced."""
    global ACTIVE
    active, ACTIVE = ACTIVE, None
    if active is None or active.pid != os.getpid():
        return
    done = asyncio.get_running_loop().create_future()

    def finished() -> None:
        if not done.done():
            done.set_result(None)

    def flush() -> None:
        try:
            active.flush()
        finally:
            with contextlib.suppress(RuntimeError):  # the loop closed after the bound: nobody waits any more
                done.get_loop().call_soon_threadsafe(finished)

    # A daemon thread, not the default executor: a flush stuck past the bound must not hold the exit.
    threading.Thread(target=flush, name="c2c-span-flush", daemon=True).start()
    try:
        await asyncio.wait_for(done, FLUSH_TIMEOUT)
    except TimeoutError:
        _LOGGER.warning("Spans not all sent within %s s: the collector does not answer", FLUSH_TIMEOUT)


class ServerSpans:
    """One server span per HTTP request, from ``tracer_provider``."""

    def __init__(self, tracer_provider: Any) -> None:
        from opentelemetry import context, propagate, trace  # noqa: PLC0415 - the extra, once installed

        self.pid = os.getpid()
        self.provider = tracer_provider
        self._tracer = tracer_provider.get_tracer("c2casgiutils", __version__)
        self._trace = trace
        self._context = context
        self._propagate = propagate
        self._server = trace.SpanKind.SERVER
        self._error = trace.StatusCode.ERROR

    def flush(self) -> None:
        """Send the queued spans (a provider without ``force_flush``, such as the API's no-op one, has none)."""
        if callable(getattr(self.provider, "force_flush", None)):
            self.provider.force_flush(int(FLUSH_TIMEOUT * 1000))

    def inject(self, carrier: dict[str, str]) -> None:
        """Add the current span's context to ``carrier`` with the configured propagator."""
        self._propagate.inject(carrier)

    async def serve(
        self,
        app: ASGIApp,
        inbound: InboundPolicy,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        templates: RouteTemplates,
    ) -> None:
        """Run ``app`` for one HTTP request inside its server span, with its trace context set.

        ``templates`` gives the route template of the span's name (the metrics' ``handler`` label).
        """
        current = self._trace.get_current_span()
        current_context = current.get_span_context()
        if current_context.is_valid and not current_context.is_remote:
            await self._within(current, app, scope, receive, send, inbound=inbound)
        else:
            await self._in_new_span(app, scope, receive, send, inbound=inbound, templates=templates)

    async def _within(
        self, span: Any, app: ASGIApp, scope: Scope, receive: Receive, send: Send, *, inbound: InboundPolicy
    ) -> None:
        """The request already has its server span (FastAPI's own, or another instrumentation's): build on it."""
        parent = getattr(span, "parent", None)
        if parent is not None and parent.is_remote and inbound.carries_refused_context(scope):
            _warn_once(
                "trust",
                "The server span of %s %s continues the trace context of an untrusted sender "
                "(C2C__TRACING__TRUST_INBOUND=%s): the span was started before c2casgiutils saw the request; with "
                "FastAPI's own spans pass telemetry={'exclude': c2casgiutils.tracing.untrusted_trace_context} to "
                "FastAPI() (see docs/tracing.md)",
                scope.get("method"),
                scope.get("path"),
                inbound.trust,
            )
        context = self._trace_context(span, parent)
        scope.setdefault("state", {})[STATE_KEY] = context
        token = trace_context_var.set(context)
        try:
            await app(scope, receive, send)
        finally:
            trace_context_var.reset(token)

    async def _in_new_span(
        self,
        app: ASGIApp,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        inbound: InboundPolicy,
        templates: RouteTemplates,
    ) -> None:
        if inbound.allows(scope):
            carrier: dict[str, list[str]] = {}
            for name, value in scope.get("headers", ()):
                carrier.setdefault(bytes(name).decode("latin-1").lower(), []).append(bytes(value).decode("latin-1"))
            # Several lines of a header are one list (RFC 9110, section 5.3): two traceparent lines are invalid.
            parent_context = self._propagate.extract({name: [",".join(lines)] for name, lines in carrier.items()})
        else:
            parent_context = self._context.Context()  # a trust boundary: the trace restarts here
        method = scope["method"]
        attributes: dict[str, Any] = {
            "http.request.method": method if method in _KNOWN_METHODS else "_OTHER",
            "url.path": scope["path"],
            "url.scheme": scope.get("scheme", "http"),
        }
        span_method = method if method in _KNOWN_METHODS else "HTTP"
        # Named by the method until the router has matched: the template comes from its match (no second walk).
        span = self._tracer.start_span(span_method, context=parent_context, kind=self._server, attributes=attributes)
        started = templates.start(scope)
        parent = self._trace.get_current_span(parent_context).get_span_context()
        context = self._trace_context(span, parent if parent.is_valid else None)
        scope.setdefault("state", {})[STATE_KEY] = context
        token = trace_context_var.set(context)
        otel_token = self._context.attach(self._trace.set_span_in_context(span, parent_context))
        status = 0

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await app(scope, receive, send_with_status)
        except Exception as error:
            span.record_exception(error)
            span.set_attribute("error.type", type(error).__qualname__)
            span.set_status(self._error)
            raise
        finally:
            route = templates.template(scope, started, status or None)
            if route is not None:
                span.update_name(f"{span_method} {route}")
                span.set_attribute("http.route", route)
            if status:
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_attribute("error.type", str(status))
                    span.set_status(self._error)
            span.end()
            self._context.detach(otel_token)
            trace_context_var.reset(token)

    @staticmethod
    def _trace_context(span: Any, parent: Any) -> TraceContext:
        span_context = span.get_span_context()
        state = span_context.trace_state
        return TraceContext(
            f"{span_context.trace_id:032x}",
            f"{span_context.span_id:016x}",
            span_context.trace_flags.sampled,
            f"{parent.span_id:016x}" if parent is not None else None,
            tuple(state.items()) if state else None,
        )
