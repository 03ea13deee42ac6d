"""Bookkeeping of prometheus_client's multiprocess directory: live workers, dead workers, their process metrics.

prometheus_client writes the values of each process to ``<type>_<pid>.db`` files (gauges:
``gauge_<mode>_<pid>.db``). The values of the ``live*`` gauge modes are meant to disappear with their process,
but only ``mark_process_dead(pid)`` removes them, and nothing calls it when a worker is SIGKILLed, crashes or
exits on a signal before its ``atexit`` hooks. Here the process that serves the metrics looks, before each
collection, for pids that have files and no process any more, and marks them dead; counters, histograms and
summaries of dead pids are kept so that totals stay monotonic.

Each worker also leaves a marker file (``c2c-worker-<pid>.pid``, not a ``.db`` file, so prometheus_client
ignores it): the serving process exposes the process metrics (``process_*``) of every live worker that has a
file, labelled by ``pid``, read from ``/proc/<pid>``. The exemplar files of the workers
(``c2c-exemplars-<pid>.bin``, see ``_metrics_exemplars``) give the request series their newest exemplar among
the live workers, served in the OpenMetrics format; a dead worker's file is removed with its live gauges.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
from collections.abc import Iterable, Iterator
from typing import Any

from c2casgiutils import _metrics_exemplars
from c2casgiutils._pids import pid_alive

_LOGGER = logging.getLogger(__name__)

WORKER_MARKER = "c2c-worker-{pid}.pid"
_FILE_PID = re.compile(r"^(?:[a-z]+_(?:[a-z]+_)?(\d+)\.db|c2c-worker-(\d+)\.pid|c2c-exemplars-(\d+)\.bin)$")
_PER_WORKER_PREFIXES = ("c2c-worker-", _metrics_exemplars.FILE_PREFIX)  # files that go when their worker dies
_LIVE_GAUGE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")


def _files_by_pid(directory: str) -> dict[int, list[str]]:
    """The metrics files and worker markers of ``directory``, by pid (one directory listing)."""
    by_pid: dict[int, list[str]] = {}
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return by_pid
    for name in names:
        match = _FILE_PID.match(name)
        if match:
            by_pid.setdefault(int(match.group(1) or match.group(2) or match.group(3)), []).append(name)
    return by_pid


def file_pids(directory: str) -> set[int]:
    """The pids that have a metrics file or a worker marker in ``directory``."""
    return set(_files_by_pid(directory))


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):  # another process removed it first
        os.remove(path)


def mark_dead_processes(directory: str) -> tuple[set[int], set[int]]:
    """Mark every dead pid of ``directory`` dead: remove its live gauges, marker and exemplars, keep its counters.

    Returns (live pids, dead pids that still had live gauges or a marker).
    """
    live: set[int] = set()
    dead: set[int] = set()
    own = os.getpid()
    for pid, names in _files_by_pid(directory).items():
        if pid == own or pid_alive(pid):
            live.add(pid)
            continue
        removable = [name for name in names if _LIVE_GAUGE.match(name) or name.startswith(_PER_WORKER_PREFIXES)]
        if removable:
            dead.add(pid)
        for name in removable:
            _remove(os.path.join(directory, name))
    return live, dead


def _mapped_files() -> set[str] | None:
    """The files this process has mapped in memory (prometheus_client maps its .db files), None without /proc."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            lines = maps.readlines()
    except OSError:
        return None
    return {parts[5].strip() for parts in (line.split(None, 5) for line in lines) if len(parts) == 6}


def drop_recycled_pid_gauges(directory: str) -> list[str]:
    """Remove live gauge files that bear this process's pid but belong to an earlier process with the same pid.

    A restarted container often gives its workers the same pids as the previous run: prometheus_client would
    reopen the old ``gauge_livesum_<pid>.db`` and go on from its stale values. A file of our pid that this
    process has not mapped yet is such a leftover. Returns the removed paths.
    """
    mapped = _mapped_files()
    if mapped is None:
        return []
    removed = []
    pid = os.getpid()
    for path in glob.glob(os.path.join(directory, f"gauge_live*_{pid}.db")):
        if os.path.realpath(path) not in mapped:
            _remove(path)
            removed.append(path)
    return removed


def register_worker(directory: str) -> None:
    """Leave this worker's marker so that its process metrics are served while it lives."""
    marker = os.path.join(directory, WORKER_MARKER.format(pid=os.getpid()))
    with open(marker, "w", encoding="ascii") as file:
        file.write(str(os.getpid()))


class LiveMultiProcessCollector:
    """prometheus_client's multiprocess sum, after marking dead pids, plus ``process_*`` of each live worker."""

    def __init__(self, directory: str, process_metrics: bool = True) -> None:
        self.directory = directory
        self.process_metrics = process_metrics
        self._current_pid = 0
        self._process_collector: Any = None
        self._platform_collector: Any = None
        if process_metrics:
            from prometheus_client import PlatformCollector, ProcessCollector  # noqa: PLC0415

            self._process_collector = ProcessCollector(pid=lambda: self._current_pid, registry=None)
            self._platform_collector = PlatformCollector(registry=None)

    def collect(self) -> Iterator[Any]:
        from prometheus_client import multiprocess  # noqa: PLC0415

        live, _ = mark_dead_processes(self.directory)
        files = glob.glob(os.path.join(self.directory, "*.db"))
        merge: Any = multiprocess.MultiProcessCollector.merge  # untyped in prometheus_client
        yield from _metrics_exemplars.attach(
            merge(files, accumulate=True), _metrics_exemplars.newest(self.directory, live)
        )
        if self.process_metrics:
            yield from self._per_pid_process_metrics(sorted(live))
            yield from self._platform_collector.collect()

    def _per_pid_process_metrics(self, pids: Iterable[int]) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily  # noqa: PLC0415

        families: dict[str, Any] = {}
        for pid in pids:
            self._current_pid = pid
            for metric in self._process_collector.collect():
                family = families.get(metric.name)
                if family is None:
                    kind = CounterMetricFamily if metric.type == "counter" else GaugeMetricFamily
                    family = families[metric.name] = kind(metric.name, metric.documentation, labels=["pid"])
                for sample in metric.samples:
                    if not sample.name.endswith("_created"):
                        family.add_metric([str(pid)], sample.value)
        yield from families.values()
