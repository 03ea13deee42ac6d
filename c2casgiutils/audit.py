"""Audit events: one structured record per security-relevant action, on the logger ``c2casgiutils.audit``.

In the spirit of Spring Boot Actuator's audit events (principal, type, data), each record says what happened
(``event``), how it ended (``outcome``), who did it (``actor``), from where (``client``: the address after
ForwardedHeadersMiddleware), in which request (``request_id``, ``trace_id``), plus the event's own fields
(a level change gives ``logger_name``, ``old_level`` and ``new_level``). The fields are attributes of the log
record, so :class:`c2casgiutils.logs.JsonFormatter` writes them as JSON keys; the message repeats them for text
logs. Every record is at INFO. ``{prefix}audit_events_total{event, outcome}`` counts them on the metrics port.

**Exactly one record per attempt or action.** A request that already has a record (a failed or refused login)
gets no second "access denied" record: :func:`record_denied` checks. **No secret, token or cookie** is ever put
in an event: callers pass names, levels, paths (no query string) and reasons of their own, never a credential.

A service can record its own events with :func:`record` (see docs/auth.md for the events of the package).
"""

from __future__ import annotations

import contextlib
import enum
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException

from c2casgiutils import _counters, config, request_id, tracing

if TYPE_CHECKING:
    from starlette.requests import HTTPConnection

LOGGER_NAME = "c2casgiutils.audit"
_LOGGER = logging.getLogger(LOGGER_NAME)

# Keys of the request's state (shared by every Request object of one ASGI scope, mounted apps included).
_RECORDED_KEY = "c2c_audit_recorded"
_ACTOR_KEY = "c2c_audit_actor"

Detail = str | int | float | bool | None


class Event(enum.StrEnum):
    """The events c2casgiutils records."""

    LOGIN = "login"
    """A login or a credential presented to a protected route: success, failure, or refused by the limiter."""
    LOGOUT = "logout"
    """The login cookie deleted."""
    LOG_LEVEL_CHANGE = "log_level_change"
    """A logger's level changed (or its override removed) through the logging tool."""
    ADMIN_TOOL = "admin_tool"
    """An admin tool used: headers echo, debug stacks or memory, versions."""
    ACCESS_DENIED = "access_denied"
    """A protected route refused: not logged in (401), no permission or admin tools closed (403)."""


class Outcome(enum.StrEnum):
    """How an event ended."""

    SUCCESS = "success"
    FAILURE = "failure"
    """A wrong credential, or an action that could not be done (e.g. Redis unavailable)."""
    REFUSED = "refused"
    """Refused by the failed-login limiter (429), whatever the credential."""
    DENIED = "denied"
    """No access to the resource."""
    PARTIAL = "partial"
    """Done, but not confirmed everywhere (a level change stored that some process did not confirm)."""


CORE_FIELDS = ("event", "outcome", "actor", "client", "request_id", "trace_id")
# Names a detail cannot take: the core fields and the attributes of every LogRecord.
_RESERVED = frozenset({*CORE_FIELDS, *vars(logging.LogRecord("", 0, "", 0, "", (), None)), "message", "asctime"})


# ---------------------------------------------------------------------------------------------- actor


def set_actor(connection: HTTPConnection, actor: str | None) -> None:
    """Remember who the request is authenticated as (the authentication calls it), for the action's record."""
    connection.state.__setattr__(_ACTOR_KEY, actor)


def actor_of(connection: HTTPConnection) -> str | None:
    """Who the request is authenticated as, when the authentication said so."""
    return getattr(connection.state, _ACTOR_KEY, None)


def is_recorded(connection: HTTPConnection) -> bool:
    """Whether the request already has its audit record."""
    return bool(getattr(connection.state, _RECORDED_KEY, False))


# ---------------------------------------------------------------------------------------------- ids


def _trace_id(connection: HTTPConnection | None) -> str | None:
    """The one place the trace id of an event is filled: the request's W3C trace id (of the log lines too)."""
    current = tracing.log_ids()[0]
    if current is None and connection is not None:
        current = getattr(getattr(connection.state, tracing.STATE_KEY, None), "trace_id", None)
    return current


def _request_id(connection: HTTPConnection | None) -> str | None:
    current = request_id.get_request_id()
    if current is None and connection is not None:
        current = getattr(connection.state, "request_id", None)
    return current


# ---------------------------------------------------------------------------------------------- records

_UNSET: Any = object()


def record(
    connection: HTTPConnection | None,
    event: str,
    outcome: str,
    *,
    actor: Any = _UNSET,  # str | None; Any so that mypy lets **details through
    **details: Detail,
) -> None:
    """Write one audit record of ``event`` and count it.

    ``actor`` defaults to who the request is authenticated as (:func:`actor_of`); ``client`` and the ids are
    read from the request. ``details`` are the event's own fields (scalars); never pass a credential.
    """
    clashing = sorted(_RESERVED.intersection(details))
    if clashing:
        raise ValueError(f"audit details cannot be named {', '.join(clashing)}")
    if actor is _UNSET:
        actor = actor_of(connection) if connection is not None else None
    client = connection.client.host if connection is not None and connection.client is not None else None
    fields: dict[str, Detail] = {
        "event": str(event),
        "outcome": str(outcome),
        "actor": actor,
        "client": client,
        "request_id": _request_id(connection),
        "trace_id": _trace_id(connection),
        **details,
    }
    if connection is not None:
        connection.state.__setattr__(_RECORDED_KEY, True)
    # repr() of each value: a path or a name from the request cannot forge a line of a text log.
    text = ", ".join(f"{key}={value!r}" for key, value in fields.items() if key not in ("event", "outcome"))
    _LOGGER.info("audit: %s %s (%s)", event, outcome, text, extra=fields)
    _counters.increment(
        f"{config.settings.prometheus.prefix}audit_events_total",
        "Audit events by event and outcome",
        {"event": str(event), "outcome": str(outcome)},
    )


def record_denied(connection: HTTPConnection, status: int, *, actor: Any = _UNSET, **details: Detail) -> None:
    """Record an ``access_denied`` event, unless the request already has its record (a failed login)."""
    if is_recorded(connection):
        return
    path = connection.url.path
    record(connection, Event.ACCESS_DENIED, Outcome.DENIED, actor=actor, path=path, status=status, **details)


@contextlib.contextmanager
def action(connection: HTTPConnection, event: str, **details: Detail) -> Iterator[None]:
    """Record ``event`` for the block: ``success`` when it ends, ``failure`` with the status when it raises an
    HTTPException (any other exception is a bug: recorded as a failure with status 500, then raised)."""
    try:
        yield
    except HTTPException as error:
        record(connection, event, Outcome.FAILURE, status=error.status_code, **details)
        raise
    except Exception:
        record(connection, event, Outcome.FAILURE, status=500, **details)
        raise
    record(connection, event, Outcome.SUCCESS, **details)
