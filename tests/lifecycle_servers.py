"""A service instance under real uvicorn (one process or ``--workers N``) for the drain and rolling-restart tests.

Each instance has its own folder: the availability/metrics directory, the log, and whatever the app needs.
It is started in a session of its own, so that a test can send a signal to the supervisor alone (as Kubernetes
does to the container's first process) or to the whole group (as Ctrl+C in a terminal does).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from tests.servers import free_port, uvicorn_workers

ROOT = Path(__file__).parent.parent
READINESS = "/c2c/health_checks?tags=readiness"
LIVENESS = "/c2c/health_checks?tags=liveness"


class UvicornInstance:
    """``uvicorn <app> --workers N`` on ``port`` with ``C2C__SHUTDOWN__DRAIN_DELAY=drain``; restartable."""

    def __init__(
        self,
        folder: Path,
        *,
        app: str = "tests.lifecycle_apps.service:app",
        app_dir: Path = ROOT,
        cwd: Path = ROOT,
        workers: int = 1,
        drain: float = 0.0,
        graceful: float = 10.0,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.state_dir = folder / "state"  # the metrics' multiprocess directory, the availability beside it
        self.state_dir.mkdir(exist_ok=True)
        self.cwd = cwd
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [
            sys.executable, "-m", "uvicorn", app, "--app-dir", str(app_dir), "--host", "127.0.0.1",
            "--port", str(self.port), "--workers", str(workers), "--timeout-graceful-shutdown", f"{graceful:g}",
            *extra_args,
        ]  # fmt: skip
        base = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("C2C__") and key != "PROMETHEUS_MULTIPROC_DIR"
        }
        self.env = {
            **base,
            "C2C__PROMETHEUS__PORT": "",
            "C2C__SHUTDOWN__DRAIN_DELAY": f"{drain:g}",
            "PROMETHEUS_MULTIPROC_DIR": str(self.state_dir),
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.runs = 0

    @property
    def log(self) -> Path:
        return self.folder / f"uvicorn-{self.runs}.log"

    def start(self, wait: bool = True, timeout: float = 120.0) -> UvicornInstance:
        self.runs += 1
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(  # noqa: S603
                self.command, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until the readiness probe answers 200 (bounded: a loaded machine starts slowly)."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while True:
            assert self.process.poll() is None, f"uvicorn exited {self.process.returncode}:\n{self.output()}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + READINESS, timeout=5).status_code == 200:
                    return
            assert time.monotonic() < deadline, f"not ready within {timeout} s:\n{self.output()}"
            time.sleep(0.2)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def workers(self) -> list[int]:
        return uvicorn_workers(self.pid)

    def send(self, sig: int, group: bool = False) -> None:
        """``sig`` to the supervisor (or the single process), or to the whole group as a terminal does."""
        if group:
            os.killpg(self.pid, sig)
        else:
            os.kill(self.pid, sig)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def close(self) -> None:
        """Stop whatever still runs (SIGKILL to the group after 30 s)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
