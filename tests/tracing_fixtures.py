"""Run the tracing test service (tests/tracing_apps/service.py) in real uvicorn processes, JSON logs in a file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import free_port, stop_process, wait_port

ROOT = Path(__file__).parent.parent
LOG_CONFIG = Path(__file__).parent / "tracing_apps" / "logging.yaml"


def wait_for(what: str, condition: Callable[[], Any], timeout: float = 60.0, interval: float = 0.3) -> Any:
    """Poll ``condition`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = condition()
        except (httpx.HTTPError, OSError) as error:
            last = error
        else:
            if last:
                return last
        time.sleep(interval)
    pytest.fail(f"{what}: not reached within {timeout} s (last: {last!r})")


class TracingService:
    """``uvicorn tests.tracing_apps.service:app`` on a free port with ``workers`` workers."""

    def __init__(self, directory: Path, name: str = "service", workers: int = 1, env: dict[str, str] | None = None):
        self.directory = directory
        self.state = directory / f"{name}-state"
        (self.state / "held").mkdir(parents=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = directory / f"{name}.log"
        self.workers = workers
        base = {k: v for k, v in os.environ.items() if not k.startswith(("C2C__", "OTEL_", "PROMETHEUS_"))}
        self.env = {
            **base,
            "PYTHONPATH": str(ROOT),
            "TEST_STATE_DIR": str(self.state),
            "C2C__PROMETHEUS__PORT": "",
            "OTEL_SERVICE_NAME": name,
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90) -> TracingService:
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "tests.tracing_apps.service:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-config",
            str(LOG_CONFIG),
            "--workers",
            str(self.workers),
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_port(self.port, timeout=timeout)
            if self.workers > 1:
                wait_for(f"{self.workers} workers", lambda: len(self.worker_pids()) == self.workers, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        with httpx.Client(timeout=30) as client:  # a new connection each time: the kernel picks a worker
            return client.get(self.url + path, **kwargs)

    def worker_pids(self) -> list[int]:
        """The uvicorn workers (children of the supervisor that run the app), read from /proc."""
        assert self.process is not None
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_bytes().rsplit(b")", 1)[-1].split()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid and fields[0] != b"Z" and b"spawn_main" in cmdline:
                pids.append(int(entry.name))
        return sorted(pids)

    def stop(self, sig: int = signal.SIGTERM, grace: float = 60) -> int | None:
        """Stop the service (SIGTERM: uvicorn's graceful shutdown); its exit code."""
        stop_process(self.process, sig, grace=grace)
        return self.process.returncode if self.process is not None else None

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def json_logs(self) -> list[dict[str, Any]]:
        entries = []
        for line in self.output().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict):
                entries.append(entry)
        return entries
