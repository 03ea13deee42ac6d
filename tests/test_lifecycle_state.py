"""The availability store (``lifecycle/_state.py``): one record per worker, the instance's state, stale records.

The other workers are real processes writing their own records with the same code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from c2casgiutils import _pids
from c2casgiutils.lifecycle._state import SUBDIRECTORY, AvailabilityStore, State, WorkerState, instance_state

WORKER = """
import sys
from c2casgiutils.lifecycle._state import AvailabilityStore, State
store = AvailabilityStore(sys.argv[1])
for state in sys.argv[2:]:
    store.set(State(state))
print("ready", flush=True)
sys.stdin.read()  # until the test closes stdin
store.close()
"""


class Worker:
    """Another process of the instance: it writes its record, holds it while it lives, removes it at the end."""

    def __init__(self, directory: Path, *states: State) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(directory), *states],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "ready"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(30)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(30)


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        if worker.process.poll() is None:
            worker.kill()


def _states(store: AvailabilityStore) -> dict[int, State]:
    return {worker.pid: worker.state for worker in store.workers()}


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ([], State.STARTING),
        ([State.STARTING], State.STARTING),
        ([State.STARTING, State.ACCEPTING], State.ACCEPTING),
        ([State.DRAINING, State.ACCEPTING], State.ACCEPTING),  # one worker restarted alone: still in service
        ([State.DRAINING, State.STARTING], State.STARTING),
        ([State.DRAINING, State.DRAINING], State.DRAINING),  # SIGTERM to the supervisor reached every worker
    ],
)
def test_instance_state_from_the_workers(states: list[State], expected: State) -> None:
    assert instance_state([WorkerState(pid, state, 0.0) for pid, state in enumerate(states)]) is expected


def test_without_directory_the_state_is_this_process_only() -> None:
    store = AvailabilityStore(None)
    assert store.instance() is State.STARTING
    store.set(State.ACCEPTING)
    assert _states(store) == {os.getpid(): State.ACCEPTING}
    store.set(State.DRAINING)
    store.set(State.ACCEPTING)  # draining is final
    assert store.instance() is State.DRAINING


def test_workers_of_one_directory_share_the_instance_state(tmp_path: Path, workers: list[Worker]) -> None:
    store = AvailabilityStore(str(tmp_path))
    store.set(State.ACCEPTING)
    other = Worker(tmp_path, State.ACCEPTING)
    workers.append(other)
    assert _states(store) == {os.getpid(): State.ACCEPTING, other.pid: State.ACCEPTING}

    store.set(State.DRAINING)  # this worker alone got SIGTERM: the other keeps the instance in service
    assert store.instance() is State.ACCEPTING

    draining = Worker(tmp_path, State.ACCEPTING, State.DRAINING)
    workers.append(draining)
    other.stop()  # left cleanly: its record is gone
    assert not (tmp_path / SUBDIRECTORY / f"{other.pid}.json").exists()
    assert _states(store) == {os.getpid(): State.DRAINING, draining.pid: State.DRAINING}
    assert store.instance() is State.DRAINING
    store.close()
    assert not (tmp_path / SUBDIRECTORY / f"{os.getpid()}.json").exists()


def test_records_of_gone_processes_are_ignored_and_removed(tmp_path: Path, workers: list[Worker]) -> None:
    killed = Worker(tmp_path, State.ACCEPTING)
    killed.kill()  # SIGKILL: its record stays behind
    folder = tmp_path / SUBDIRECTORY
    assert (folder / f"{killed.pid}.json").exists()

    # A record whose pid now belongs to another process (a restarted container reuses pids): another start time.
    recycled = Worker(tmp_path)
    workers.append(recycled)
    record = json.loads((folder / f"{recycled.pid}.json").read_text())
    (folder / f"{recycled.pid}.json").write_text(
        json.dumps({**record, "state": "accepting", "start_time": record["start_time"] - 1})
    )
    # A record of this very pid left by an earlier process: replaced by this process's own.
    (folder / f"{os.getpid()}.json").write_text(
        json.dumps({"pid": os.getpid(), "start_time": 1, "state": "draining", "since": 0})
    )

    store = AvailabilityStore(str(tmp_path))
    assert store.instance() is State.STARTING  # not draining, not accepting: what was left is not this run's
    assert _states(store) == {os.getpid(): State.STARTING}
    assert sorted(path.name for path in folder.iterdir()) == [f"{os.getpid()}.json"]
    assert json.loads((folder / f"{os.getpid()}.json").read_text())["start_time"] == _pids.start_time(os.getpid())


def test_unreadable_records_are_skipped(tmp_path: Path) -> None:
    store = AvailabilityStore(str(tmp_path))
    folder = tmp_path / SUBDIRECTORY
    (folder / "12345.json").write_text("{not json")
    (folder / "notes.txt").write_text("not a record")
    (folder / "54321.json").write_text(json.dumps({"pid": 54321, "state": "sleeping", "since": 0}))
    assert _states(store) == {os.getpid(): State.STARTING}


def test_start_time_names_one_process() -> None:
    own = _pids.start_time(os.getpid())
    assert isinstance(own, int)
    assert own == _pids.start_time(os.getpid())
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(30)
    assert _pids.start_time(process.pid) is None
