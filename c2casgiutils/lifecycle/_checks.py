"""The built-in probes: ``ReadinessState`` (503 while starting or draining) and ``LivenessState`` (200)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from c2casgiutils._health.check import Check
from c2casgiutils._health.models import Result
from c2casgiutils.lifecycle._drain import PROCESS, ProcessDrain
from c2casgiutils.lifecycle._state import State, instance_state


def _payload(drain: ProcessDrain) -> tuple[State, dict[str, Any]]:
    # A few small local files read in the event loop: cheaper than a thread hop, bounded by the worker count.
    workers = drain.workers()
    state = instance_state(workers)
    own = drain.own()
    return state, {
        "state": state.value,
        "pid": os.getpid(),
        "process_state": None if own is None else own.state.value,
        "workers": {str(worker.pid): worker.state.value for worker in workers},
    }


class _AvailabilityCheck(Check):
    """A check that reads the availability of ``drain`` (this process's, by default)."""

    default_tag: str
    default_name: str

    def __init__(
        self, tags: Iterable[str] | None = None, *, name: str | None = None, drain: ProcessDrain = PROCESS
    ) -> None:
        super().__init__((self.default_tag,) if tags is None else tags, name=name or self.default_name)
        self.drain = drain


class ReadinessState(_AvailabilityCheck):
    """Fails with 503 while the instance is starting or draining: load balancers send it no new traffic then."""

    default_tag = "readiness"
    default_name = "ReadinessState"
    log_failures = False  # refusing while starting or draining is its job; the state changes are logged once

    async def check(self) -> Result:
        """200 while the instance accepts traffic, 503 while it starts or drains."""
        state, payload = _payload(self.drain)
        return Result(status_code=200 if state is State.ACCEPTING else 503, payload=payload)


class LivenessState(_AvailabilityCheck):
    """200 whenever the process answers, draining included: a drain is no reason to restart a container."""

    default_tag = "liveness"
    default_name = "LivenessState"

    async def check(self) -> Result:
        """Always 200, with the availability state as information."""
        _, payload = _payload(self.drain)
        return Result(status_code=200, payload=payload)
