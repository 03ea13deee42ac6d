"""Availability of the service instance (``starting`` → ``accepting`` → ``draining``), its probes, the drain.

:func:`c2casgiutils.startup` drives it: the process is ``starting`` while start-up runs and ``accepting``
after; the built-in checks ``ReadinessState`` (tag ``readiness``: 503 while the instance starts or drains) and
``LivenessState`` (tag ``liveness``: 200 while the process answers, draining included) are registered on
``health_checks.FACTORY``. On SIGTERM the process enters ``draining`` at once and keeps serving for
``C2C__SHUTDOWN__DRAIN_DELAY`` seconds, each answer with ``Connection: close`` (add :class:`DrainMiddleware`),
before uvicorn shuts down as usual. The workers of one instance share the state through a directory
(``C2C__SHUTDOWN__AVAILABILITY_DIR``, by default the metrics' multiprocess directory), never through Redis.

    from c2casgiutils import lifecycle

    app.add_middleware(lifecycle.DrainMiddleware)
    lifecycle.state()          # State.ACCEPTING: the instance, as the readiness probe reports it

See docs/operations.md for the timeline of a rolling deploy.
"""

from __future__ import annotations

from c2casgiutils.lifecycle._checks import LivenessState, ReadinessState
from c2casgiutils.lifecycle._drain import PROCESS
from c2casgiutils.lifecycle._middleware import DrainMiddleware
from c2casgiutils.lifecycle._state import State, WorkerState, instance_state

__all__ = [
    "DrainMiddleware",
    "LivenessState",
    "ReadinessState",
    "State",
    "WorkerState",
    "instance_state",
    "is_draining",
    "process_state",
    "state",
    "workers",
]


def state() -> State:
    """The availability of the instance (all its workers), as the readiness probe reports it."""
    return instance_state(PROCESS.workers())


def process_state() -> State:
    """The availability of this process alone (``starting`` before :func:`c2casgiutils.startup`)."""
    own = PROCESS.own()
    return State.STARTING if own is None else own.state


def workers() -> list[WorkerState]:
    """The live workers of the instance with their state (this process only without a shared directory)."""
    return PROCESS.workers()


def is_draining() -> bool:
    """Whether this process got SIGTERM (or SIGINT) and drains."""
    return PROCESS.draining
