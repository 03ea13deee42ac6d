"""TraceContextMiddleware: give every request its W3C trace context, and its server span when spans are exported.

Pure ASGI, HTTP and WebSocket (other scopes pass through). ``RequestIdMiddleware`` runs it inside itself, so a
service that has request ids has trace context too. Without export (no ``otel`` extra, or no OTLP endpoint) a
request costs a header scan, a parse and a new span id: no span object, no OpenTelemetry import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from c2casgiutils import config
from c2casgiutils.tracing import _export
from c2casgiutils.tracing._context import STATE_KEY, trace_context_var
from c2casgiutils.tracing._inbound import InboundPolicy, Trust

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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.enabled or scope["type"] not in _TRACED_TYPES:
            await self.app(scope, receive, send)
            return
        export = _export.ACTIVE
        if export is not None and scope["type"] == "http":
            await export.serve(self.app, self.inbound, scope, receive, send)
            return
        context = self.inbound.context(scope)
        scope.setdefault("state", {})[STATE_KEY] = context
        token = trace_context_var.set(context)
        try:
            await self.app(scope, receive, send)
        finally:
            trace_context_var.reset(token)
