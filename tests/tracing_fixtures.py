"""The tracing test service (tests/tracing_apps/service.py) in real uvicorn processes, and JSON log capture."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from c2casgiutils.logs import JsonFormatter
from tests.admin_fixtures import UvicornService
from tests.test_prometheus_workers import wait_for

LOG_CONFIG = Path(__file__).parent / "tracing_apps" / "logging.yaml"
_OWN_VARIABLES = ("C2C__", "OTEL_", "PROMETHEUS_")  # of the test run's environment: never passed to the service


@contextmanager
def json_lines(logger: logging.Logger) -> Iterator[io.StringIO]:
    """The lines ``logger`` writes through ``JsonFormatter`` alone (no filter), as the docs configure it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)


class TracingService(UvicornService):
    """``uvicorn tests.tracing_apps.service:app`` with ``workers`` workers; logs in ``directory/<name>.log``.

    ``OTEL_SERVICE_NAME`` is ``name``; ``/hold`` requests wait for ``state/release``.
    """

    def __init__(
        self, directory: Path, name: str = "service", workers: int = 1, env: dict[str, str] | None = None
    ) -> None:
        self.state = directory / f"{name}-state"
        (self.state / "held").mkdir(parents=True)
        given = {"TEST_STATE_DIR": str(self.state), "OTEL_SERVICE_NAME": name, **(env or {})}
        super().__init__(
            env=given,
            workers=workers,
            app="tests.tracing_apps.service:app",
            log_config=LOG_CONFIG,
            log_path=directory / f"{name}.log",
        )
        self.env = {
            key: value for key, value in self.env.items() if key in given or not key.startswith(_OWN_VARIABLES)
        }
        self.env.setdefault("C2C__PROMETHEUS__PORT", "")

    def start(self, timeout: float = 90) -> TracingService:  # type: ignore[override]
        super().start(timeout)
        if self.workers > 1:
            wait_for(f"{self.workers} workers", lambda: len(self.worker_pids()) == self.workers, timeout)
        return self

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        with httpx.Client(timeout=30) as client:  # a new connection each time: the kernel picks a worker
            return client.get(self.url + path, **kwargs)

    def worker_pids(self) -> set[int]:
        """The uvicorn workers only (not the multiprocessing helper), read from /proc."""
        assert self.process is not None
        pids = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_bytes().rsplit(b")", 1)[-1].split()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid and fields[0] != b"Z" and b"spawn_main" in cmdline:
                pids.add(int(entry.name))
        return pids

    def exited(self, timeout: float) -> int:
        """Wait for the service to exit on its own (after a signal it was sent); its exit code."""
        assert self.process is not None
        return self.process.wait(timeout)


__all__ = ["TracingService", "json_lines", "wait_for"]
