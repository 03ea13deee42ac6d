"""TraceContextMiddleware: give every request its W3C trace context, and its server span when spans are exported.

Pure ASGI, HTTP and WebSocket (other scopes pass through). ``RequestIdMiddleware`` runs it inside itself, so a
service that has request ids has trace context too. Without export (no ``otel`` extra, or no OTLP endpoint) a
request costs a header scan, a parse and a new span id: no span object, no OpenTelemetry import.
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING

from c2casgiutils import config
from c2casgiutils.route_templates import RouteTemplates
from c2casgiutils.tracing import _export
from c2casgiutils.tracing._context import STATE_KEY, TraceContext, trace_context_var
from c2casgiutils.tracing._inbound import HeaderLines, InboundPolicy, Trust

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

_TRACED_TYPES = frozenset({"http", "websocket"})


class TraceContextMiddleware:
    """Set the trace context of each request (``tracing.get_trace_context()``, ``request.state.trace_context``).

    ``trust`` and ``trusted_hosts`` default to ``C2C__TRACING__TRUST_INBOUND`` and the forwarded-headers
    ``C2C__PROXY_HEADERS__TRUSTED_HOSTS``; ``enabled`` to ``C2C__TRACING__ENABLED`` (False: requests pass through).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        trust: Trust | None = None,
        trusted_hosts: list[str] | str | None = None,
        enabled: bool | None = None,
    ) -> None:
        settings = config.settings
        self.app = app
        self.enabled = settings.tracing.enabled if enabled is None else enabled
        self.inbound = InboundPolicy(
            settings.tracing.trust_inbound if trust is None else trust,
            settings.proxy_headers.trusted_hosts if trusted_hosts is None else trusted_hosts,
        )
        # The span's name: the route template of the metrics' ``handler`` label, one computation per request.
        self.templates = RouteTemplates(app)

    def enter(self, scope: Scope, lines: HeaderLines | None = None) -> contextvars.Token[TraceContext | None] | None:
        """Set the request's trace context, without an ASGI layer (``RequestIdMiddleware`` runs it inline).

        ``lines``: the request's ``traceparent`` and ``tracestate`` lines when the caller has scanned the headers
        already (None: they are read here). Returns the token to reset the contextvar with; None when nothing was
        set: disabled, a scope that is not HTTP or WebSocket, or an HTTP request while spans are exported
        (``__call__`` then opens its span around the app).
        """
        if not self.enabled:
            return None
        kind = scope["type"]
        if kind not in _TRACED_TYPES or (kind == "http" and _export.ACTIVE is not None):
            return None
        context = self.inbound.context(scope, lines)
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state[STATE_KEY] = context
        return trace_context_var.set(context)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = self.enter(scope)
        if token is not None:
            try:
                await self.app(scope, receive, send)
            finally:
                trace_context_var.reset(token)
            return
        export = _export.ACTIVE
        if self.enabled and export is not None and scope["type"] == "http":
            await export.serve(self.app, self.inbound, scope, receive, send, templates=self.templates)
        else:
            await self.app(scope, receive, send)
