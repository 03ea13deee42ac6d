"""The server spans that recent FastAPI releases start themselves: the trust setting, and mounted apps.

FastAPI (since it ships its own telemetry) starts a request's server span before any middleware runs, from the
headers as they came: :func:`untrusted_trace_context`, given as its ``exclude`` hook, leaves to c2casgiutils the
requests whose trace context the settings do not trust, and c2casgiutils starts their span in a new trace.

A FastAPI app mounted in another one (``c2casgiutils.app`` at ``/c2c``) makes no span of its own when the outer
FastAPI made one; but when the outer app made none (another framework, spans off, an excluded request) it would
start a second server span beside the one of c2casgiutils' middleware: :func:`mounted_app_options` turns its spans
off, the request's span is the outer one.
"""

from __future__ import annotations

import functools
import inspect
from typing import TYPE_CHECKING, Any

from c2casgiutils import config
from c2casgiutils.tracing._inbound import InboundPolicy

if TYPE_CHECKING:
    from collections.abc import MutableMapping

_POLICY: tuple[Any, InboundPolicy] | None = None


def _policy() -> InboundPolicy:
    """The policy of the current settings, built once per settings object."""
    global _POLICY  # noqa: PLW0603 - a cache of one entry
    settings = config.settings
    if _POLICY is None or _POLICY[0] is not settings:
        _POLICY = (settings, InboundPolicy(settings.tracing.trust_inbound, settings.proxy_headers.trusted_hosts))
    return _POLICY[1]


def untrusted_trace_context(scope: MutableMapping[str, Any]) -> bool:
    """Whether ``scope`` sends a trace context that ``C2C__TRACING__TRUST_INBOUND`` does not trust.

    Made for ``FastAPI(telemetry={"exclude": untrusted_trace_context})``: FastAPI then makes no span for such a
    request, and c2casgiutils' middleware makes it in a new trace.
    """
    if scope.get("type") not in ("http", "websocket"):
        return False
    return _policy().carries_refused_context(scope)


@functools.cache
def _has_telemetry() -> bool:
    from fastapi import FastAPI  # noqa: PLC0415

    return "telemetry" in inspect.signature(FastAPI.__init__).parameters


def fastapi_options() -> dict[str, Any]:
    """Keyword arguments for the service's ``FastAPI(...)``: the trust hook above where FastAPI has telemetry."""
    return {"telemetry": {"exclude": untrusted_trace_context}} if _has_telemetry() else {}


def mounted_app_options() -> dict[str, Any]:
    """Keyword arguments for a FastAPI app mounted in the service's app: no server span of its own."""
    return {"telemetry": {"tracing": False}} if _has_telemetry() else {}
