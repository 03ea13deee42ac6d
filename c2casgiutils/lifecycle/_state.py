"""The availability state of the instance, shared by its workers through one small file per worker.

An instance is one server with its workers (``uvicorn --workers N``: the supervisor and its children). Each
worker keeps its own state, ``starting`` → ``accepting`` → ``draining``, and, when a directory is given,
writes it to ``<directory>/c2c-availability/<pid>.json`` with its start time; every worker reads the whole
folder to answer for the instance, so a probe gets the same answer from any worker. Without a directory (one
process) the state lives in memory.

The instance is

- ``accepting`` when one of its live workers accepts (a worker restarted alone, by ``SIGHUP`` or ``SIGTTOU``,
  drains by itself while the others keep the instance in service);
- else ``starting`` when one is starting;
- else ``draining``: every live worker got ``SIGTERM``, as when the supervisor forwards it to all of them.

A record whose pid is gone, or whose pid now belongs to a process with another start time (a container
restarted with the same folder often reuses the pids), is left from an earlier run: it is ignored and
removed, so a restarted instance starts as ``starting``, never in a drain state left behind.
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass

from c2casgiutils import _pids

_LOGGER = logging.getLogger(__name__)

SUBDIRECTORY = "c2c-availability"


class State(enum.StrEnum):
    """Availability of a worker or of the instance."""

    STARTING = "starting"
    ACCEPTING = "accepting"
    DRAINING = "draining"


@dataclass(frozen=True)
class WorkerState:
    """One worker as its record says: pid, state, and since when (wall clock, seconds)."""

    pid: int
    state: State
    since: float


def instance_state(workers: list[WorkerState]) -> State:
    """The state of the instance from the states of its live workers (see the module's documentation)."""
    states = {worker.state for worker in workers}
    if State.ACCEPTING in states:
        return State.ACCEPTING
    if State.STARTING in states or not states:
        return State.STARTING
    return State.DRAINING


class AvailabilityStore:
    """This process's state, and the records of the other workers of the instance when ``directory`` is set."""

    def __init__(self, directory: str | None) -> None:
        self.directory = os.path.join(directory, SUBDIRECTORY) if directory else None
        self.pid = os.getpid()
        self._start_time = _pids.start_time(self.pid)
        self._own = WorkerState(self.pid, State.STARTING, time.time())
        if self.directory is not None:
            os.makedirs(self.directory, exist_ok=True)
        self._write()

    @property
    def own(self) -> WorkerState:
        """This process's state."""
        return self._own

    def set(self, state: State) -> None:
        """Move this process to ``state`` (``draining`` is final: nothing moves a draining process back)."""
        if self._own.state is State.DRAINING or self._own.state is state:
            return
        self._own = WorkerState(self.pid, state, time.time())
        self._write()

    def _path(self, pid: int) -> str:
        assert self.directory is not None
        return os.path.join(self.directory, f"{pid}.json")

    def _write(self) -> None:
        if self.directory is None:
            return
        record = {
            "pid": self.pid,
            "start_time": self._start_time,
            "state": self._own.state.value,
            "since": self._own.since,
        }
        try:
            # Written whole then renamed: a reader sees the old record or the new one, never half of one.
            handle, temporary = tempfile.mkstemp(prefix=f".{self.pid}.", dir=self.directory)
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                json.dump(record, file)
            os.replace(temporary, self._path(self.pid))
        except OSError as error:
            # The state stays right in this process; only the other workers do not see it.
            _LOGGER.warning("Could not write the availability state to %s: %s", self.directory, error)

    def workers(self) -> list[WorkerState]:
        """The live workers of the instance, this one included; records of gone processes are removed."""
        if self.directory is None:
            return [self._own]
        result = [self._own]
        try:
            names = os.listdir(self.directory)
        except OSError:
            return result
        for name in names:
            stem, dot, extension = name.partition(".")
            if not dot or extension != "json" or not stem.isdigit() or int(stem) == self.pid:
                continue
            worker = self._read(int(stem))
            if worker is not None:
                result.append(worker)
        return sorted(result, key=lambda worker: worker.pid)

    def _read(self, pid: int) -> WorkerState | None:
        path = self._path(pid)
        try:
            with open(path, encoding="utf-8") as file:
                record = json.load(file)
            worker = WorkerState(int(record["pid"]), State(record["state"]), float(record["since"]))
            recorded_start = record.get("start_time")
        except FileNotFoundError:
            return None  # gone since the listing
        except (OSError, ValueError, KeyError, TypeError):
            _LOGGER.debug("Ignored the unreadable availability record %s", path)
            return None
        if _pids.pid_alive(pid) and (recorded_start is None or recorded_start == _pids.start_time(pid)):
            return worker
        with contextlib.suppress(OSError):  # another worker removed it first
            os.remove(path)
        return None

    def instance(self) -> State:
        """The state of the instance."""
        return instance_state(self.workers())

    def close(self) -> None:
        """This process leaves the instance: its record is removed."""
        if self.directory is not None:
            with contextlib.suppress(OSError):
                os.remove(self._path(self.pid))
