"""The trace context of an incoming request: read from its W3C headers when the sender is trusted, else new.

The spec lists crossing a trust boundary as a reason to restart a trace: a client could otherwise choose the
trace id of our spans and log lines, or force its requests to be sampled. ``trust`` says whose context is kept:

- ``always`` (the default): every sender's, as the spec's processing model does;
- ``trusted_proxies``: only a request whose direct peer (``scope["client"]``) is one of the trusted proxies of the
  forwarded-headers settings; the check needs the peer's own address, so the middleware that reads the context
  must see the request before ``ForwardedHeadersMiddleware`` (or uvicorn's ``--proxy-headers``) replaces the
  peer by the client: a replaced peer is a client, not a proxy, and its context is dropped;
- ``never``: every request starts a new trace.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from c2casgiutils.tracing._context import TraceContext, new_span_id, new_trace
from c2casgiutils.tracing._w3c import parse_tracestate, traceparent_fields

if TYPE_CHECKING:
    from starlette.types import Scope

_new_tuple = tuple.__new__
Trust = Literal["always", "trusted_proxies", "never"]
TRUST_VALUES: tuple[Trust, ...] = ("always", "trusted_proxies", "never")
HeaderLines = tuple[list[str] | None, list[str] | None]
"""The ``traceparent`` and ``tracestate`` lines of a request (latin-1 text), None for a missing header."""


def trace_headers(scope: Scope) -> HeaderLines:
    """The ``traceparent`` and ``tracestate`` lines of a request (latin-1 text), None for a missing header."""
    parents: list[str] | None = None
    states: list[str] | None = None
    for name, value in scope.get("headers", ()):
        size = len(name)  # a length test first: most headers are neither, and need no lower()
        if size == 11 and name.lower() == b"traceparent":
            if parents is None:
                parents = []
            parents.append(value.decode("latin-1"))
        elif size == 10 and name.lower() == b"tracestate":
            if states is None:
                states = []
            states.append(value.decode("latin-1"))
    return parents, states


class InboundPolicy:
    """Which senders' trace context is kept, and the context of a request under that rule."""

    def __init__(self, trust: Trust = "always", trusted_hosts: list[str] | str = "127.0.0.1") -> None:
        if trust not in TRUST_VALUES:
            raise ValueError(f"trust: expected one of {', '.join(TRUST_VALUES)}, got {trust!r}")
        self.trust = trust
        self._always = trust == "always"
        self._proxies: Any = None
        if trust == "trusted_proxies":
            from c2casgiutils._forwarded import TrustedProxies  # noqa: PLC0415 - only for this mode

            self._proxies = TrustedProxies(trusted_hosts)

    def allows(self, scope: Scope) -> bool:
        """Whether the trace context sent with this request is kept."""
        if self.trust == "always":
            return True
        if self.trust == "never":
            return False
        client: Any = scope.get("client")
        return bool(client) and client[0] in self._proxies

    def context(self, scope: Scope, lines: HeaderLines | None = None) -> TraceContext:
        """The request's trace context: the caller's trace with a new span of ours, or a new trace.

        ``lines``: the request's trace headers when already read (:func:`trace_headers` otherwise).
        """
        if self._always or self.allows(scope):
            parents, states = trace_headers(scope) if lines is None else lines
            if parents is not None:
                fields = traceparent_fields(parents[0] if len(parents) == 1 else ",".join(parents))
                if fields is not None:
                    state = parse_tracestate(states) if states is not None else None
                    # tuple.__new__: the named tuple built in C, a fraction of calling the class.
                    return _new_tuple(TraceContext, (fields[0], new_span_id(), fields[2], fields[1], state))
        # A trace that starts here is sampled: its log lines record it, and the services it calls may record theirs.
        return new_trace()

    def carries_refused_context(self, scope: Scope) -> bool:
        """Whether the request sends a trace context that this policy does not keep."""
        if self._always or self.allows(scope):
            return False
        parents, states = trace_headers(scope)
        return parents is not None or states is not None
