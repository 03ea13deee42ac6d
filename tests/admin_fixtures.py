"""Run the admin test service (tests/admin_apps/service.py) in real uvicorn processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.servers import free_port, wait_port

ROOT = Path(__file__).parent.parent
LOG_CONFIG = Path(__file__).parent / "admin_apps" / "logging.yaml"
SECRET = "admin-test-secret-with-enough-length-0123456789"


class UvicornService:
    """``uvicorn tests.admin_apps.service:app`` (or ``app``) on a free port, JSON logs captured in a file."""

    def __init__(
        self,
        env: dict[str, str] | None = None,
        workers: int = 1,
        *,
        app: str = "tests.admin_apps.service:app",
        log_config: Path = LOG_CONFIG,
        log_path: Path | None = None,
    ) -> None:
        self.port = free_port()
        self.workers = workers
        self.app = app
        self.log_config = log_config
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "C2C__AUTH__SECRET": SECRET,
            "C2C__HTTP": "true",
            "C2C__AUTH__JWT__COOKIE__SECURE": "false",
            "C2C__PROMETHEUS__PORT": "",
            **(env or {}),
        }
        self.log_file: Any = (
            log_path.open("wb")  # noqa: SIM115 - closed by close()
            if log_path is not None
            else tempfile.NamedTemporaryFile(prefix="c2c-admin-", suffix=".log", delete=False)  # noqa: SIM115
        )
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> UvicornService:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> None:
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            self.app,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-config",
            str(self.log_config),
            "--timeout-graceful-shutdown",
            "5",
        ]
        if self.workers > 1:
            command += ["--workers", str(self.workers)]
        self.process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=self.log_file, stderr=subprocess.STDOUT)
        try:
            wait_port(self.port, timeout=timeout)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{self.url}/hello", timeout=2).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if self.process.poll() is not None:
                    break
                time.sleep(0.1)
            raise RuntimeError(f"the service did not start:\n{self.logs_text()}")
        except Exception:
            self.stop()
            raise

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def close(self) -> None:
        self.stop()
        self.log_file.close()
        Path(self.log_file.name).unlink(missing_ok=True)

    def logs_text(self) -> str:
        return Path(self.log_file.name).read_text(encoding="utf-8", errors="replace")

    def json_logs(self) -> list[dict[str, Any]]:
        """Every JSON log line written so far (other lines, e.g. from a crash, are skipped)."""
        entries = []
        for line in self.logs_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict):
                entries.append(entry)
        return entries

    def worker_pids(self) -> set[int]:
        """Pids of the uvicorn worker processes (children of the supervisor), read from /proc."""
        assert self.process is not None
        children = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid:
                children.add(int(stat.parent.name))
        return children
