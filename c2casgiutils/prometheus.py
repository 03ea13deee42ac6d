"""The Prometheus metrics server on ``settings.prometheus.port``, safe with several uvicorn workers.

With several workers, prometheus_client's multiprocess mode is used (directory from
``C2C__PROMETHEUS__MULTIPROC_DIR`` or ``PROMETHEUS_MULTIPROC_DIR``): every worker writes its values to
files in that directory and whichever worker holds the port serves the sum over all of them, the
counters of dead workers included. The other workers find the port taken, do not crash, and keep
trying in the background so that one of them takes over when the serving worker dies.

Before each collection the serving worker marks dead workers (pids whose process is gone): the values of
their ``live*`` gauges disappear, their counters stay. It also serves the process metrics (``process_*``) of
every live worker, labelled by ``pid``. See ``_metrics_multiproc``.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import logging
import os
import sys
import threading
from typing import TYPE_CHECKING, Any

from c2casgiutils import _metrics_multiproc, config
from c2casgiutils._metrics_http import PrometheusMiddleware
from c2casgiutils._optional import require

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

__all__ = [
    "MULTIPROC_ENV",
    "MetricsServer",
    "PrometheusMiddleware",
    "build_registry",
    "multiproc_dir",
    "setup_multiprocess",
    "start_metrics_server",
    "stop_metrics_server",
]

_LOGGER = logging.getLogger(__name__)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
RETRY_INTERVAL = 5.0


def multiproc_dir() -> str | None:
    """The multiprocess directory in use, if any (the setting wins over the environment variable)."""
    return config.settings.prometheus.multiproc_dir or os.environ.get(MULTIPROC_ENV) or None


def setup_multiprocess() -> str | None:
    """Export the multiprocess directory for prometheus_client and create it.

    prometheus_client reads ``PROMETHEUS_MULTIPROC_DIR`` when it is first imported, so this runs when
    c2casgiutils is imported; it warns when prometheus_client was imported before in another mode.
    """
    directory = multiproc_dir()
    if directory is None:
        return None
    os.environ[MULTIPROC_ENV] = directory
    os.makedirs(directory, exist_ok=True)
    # Before this process creates any value: gauges left by an earlier process with the same pid.
    _metrics_multiproc.drop_recycled_pid_gauges(directory)
    values = sys.modules.get("prometheus_client.values")
    if values is not None and getattr(values.ValueClass, "__name__", "") == "MutexValue":
        _LOGGER.warning(
            "prometheus_client was imported before the multiprocess directory %s was set: set %s in the "
            "environment of the server so that metrics of all workers are summed",
            directory,
            MULTIPROC_ENV,
        )
    return directory


class MetricsServer:
    """The metrics HTTP server of this process, or the background attempts to become it."""

    def __init__(self, port: int, addr: str, registry: Any) -> None:
        self.port = port
        self.addr = addr
        self.registry = registry
        self.server: WSGIServer | None = None
        self._stop = threading.Event()
        self._retry_thread: threading.Thread | None = None

    @property
    def serving(self) -> bool:
        """Whether this process serves the metrics."""
        return self.server is not None

    def try_start(self) -> bool:
        prometheus_client = require("prometheus_client", "prometheus", "The metrics server")
        try:
            self.server, _ = prometheus_client.start_http_server(self.port, self.addr, registry=self.registry)
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise
            return False
        _LOGGER.info("Serving Prometheus metrics on %s:%s (pid %s)", self.addr, self.port, os.getpid())
        return True

    def retry_in_background(self) -> None:
        def _retry() -> None:
            while not self._stop.wait(RETRY_INTERVAL):
                with contextlib.suppress(OSError):
                    if self.try_start():
                        return

        self._retry_thread = threading.Thread(target=_retry, name="c2c-metrics-retry", daemon=True)
        self._retry_thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


_SERVER: MetricsServer | None = None


def build_registry() -> Any:
    """The registry to serve: the sum over all processes in multiprocess mode, else the default one."""
    prometheus_client = require("prometheus_client", "prometheus", "The metrics server")
    directory = multiproc_dir()
    if directory is None:
        return prometheus_client.REGISTRY
    registry = prometheus_client.CollectorRegistry()
    registry.register(_metrics_multiproc.LiveMultiProcessCollector(directory))
    return registry


_WARNED_DEAD = False


def _prepare_worker(directory: str) -> None:
    """Leave this worker's marker, drop the live gauges of dead pids and warn once if there were any."""
    global _WARNED_DEAD  # noqa: PLW0603 - one warning per process
    _metrics_multiproc.register_worker(directory)  # recycled-pid gauges: dropped by setup_multiprocess() just before
    _, dead = _metrics_multiproc.mark_dead_processes(directory)
    if dead and not _WARNED_DEAD:
        _WARNED_DEAD = True
        _LOGGER.warning(
            "The metrics directory %s has files of %d dead processes (killed workers or an earlier run): their "
            "gauges are dropped and their counters kept; empty the directory before the server starts "
            "(in the container's entry point)",
            directory,
            len(dead),
        )


def start_metrics_server(port: int | None = None, addr: str | None = None) -> MetricsServer | None:
    """Serve the metrics on ``addr``:``port`` (defaults: ``settings.prometheus.host`` and ``.port``; port None
    disables it).

    Idempotent in one process. When the port is taken by another worker of the same service (multiprocess
    mode), this process keeps trying in the background instead of failing.
    """
    global _SERVER  # noqa: PLW0603 - one metrics server per process
    if _SERVER is not None:
        return _SERVER
    port = config.settings.prometheus.port if port is None else port
    if port is None:
        return None
    addr = config.settings.prometheus.host if addr is None else addr
    directory = setup_multiprocess()
    if directory is not None:
        _prepare_worker(directory)
    server = MetricsServer(port, addr, build_registry())
    if not server.try_start():
        if multiproc_dir() is None:
            _LOGGER.warning(
                "Port %s is already in use: metrics are not served by this process (pid %s); with several "
                "workers set %s or C2C__PROMETHEUS__MULTIPROC_DIR",
                port,
                os.getpid(),
                MULTIPROC_ENV,
            )
        else:
            _LOGGER.info("Metrics port %s is served by another worker; pid %s stands by", port, os.getpid())
        server.retry_in_background()
    _SERVER = server
    atexit.register(stop_metrics_server)
    return server


def stop_metrics_server() -> None:
    """Stop this process's metrics server and mark the process dead for multiprocess gauges."""
    global _SERVER  # noqa: PLW0603
    if _SERVER is not None:
        _SERVER.stop()
        _SERVER = None
    directory = multiproc_dir()
    if directory is not None and "prometheus_client" in sys.modules:
        multiprocess = require("prometheus_client.multiprocess", "prometheus", "The metrics server")
        multiprocess.mark_process_dead(os.getpid(), directory)
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(directory, _metrics_multiproc.WORKER_MARKER.format(pid=os.getpid())))
