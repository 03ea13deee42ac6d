"""This process's part of the instance's availability: its record, the drain flag, the signal handling."""

from __future__ import annotations

import logging
import os

from c2casgiutils import prometheus
from c2casgiutils.lifecycle._signals import SignalDrain
from c2casgiutils.lifecycle._state import AvailabilityStore, State, WorkerState

_LOGGER = logging.getLogger(__name__)


class ProcessDrain:
    """Created once per process (:data:`PROCESS`); :func:`c2casgiutils.startup` and ``shutdown`` drive it."""

    def __init__(self) -> None:
        self.draining = False  # read on every answer by DrainMiddleware: a plain attribute
        self.store: AvailabilityStore | None = None
        self.signals: SignalDrain | None = None

    def begin(self, drain_delay: float, directory: str | None) -> None:
        """Start-up begins: this process is ``starting``; SIGTERM drains for ``drain_delay`` seconds from now on."""
        if self.store is not None and self.store.pid == os.getpid():
            return  # started already in this process
        self.draining = False
        self.store = AvailabilityStore(directory)
        self.signals = SignalDrain(drain_delay, self.enter_draining)
        if not self.signals.install() and drain_delay > 0:
            _LOGGER.warning(
                "C2C__SHUTDOWN__DRAIN_DELAY is set but the server does not handle SIGTERM with a Python handler in "
                "the main thread (uvicorn does): this process will not drain"
            )

    def started(self) -> None:
        """Start-up is over: this process accepts traffic (unless it drains already)."""
        if self.store is not None:
            self.store.set(State.ACCEPTING)

    def enter_draining(self) -> None:
        """Readiness fails and answers close their connection from now on; final for this process."""
        self.draining = True
        if self.store is not None:
            self.store.set(State.DRAINING)
        _LOGGER.info("Process %s is draining", os.getpid())

    def end(self) -> None:
        """Shut-down: leave the instance; when a signal stops the process, the metrics count it as gone.

        uvicorn re-raises the stop signal after its graceful shutdown, so ``atexit`` hooks do not run then: the
        metrics' multiprocess files of this pid are marked dead here, as ``stop_metrics_server`` does.
        """
        signals, self.signals = self.signals, None
        if signals is not None:
            signals.uninstall()
            if signals.terminating:
                prometheus.stop_metrics_server()
        store, self.store = self.store, None
        if store is not None:
            store.close()

    def own(self) -> WorkerState | None:
        """This process's state, None before start-up."""
        return None if self.store is None else self.store.own

    def workers(self) -> list[WorkerState]:
        """The live workers of the instance (only this process without a shared directory)."""
        return [] if self.store is None else self.store.workers()


PROCESS = ProcessDrain()
"""This process's drain: what ``startup()`` drives, what ``DrainMiddleware`` and the probes read."""
