"""Run the test service of tests/broadcast_apps with real uvicorn workers, and wait until they all listen."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from c2casgiutils import broadcast
from tests.servers import free_port, wait_port

ROOT = Path(__file__).resolve().parent.parent
BROADCAST_SECRET = "test-broadcast-secret"
AUTH_SECRET = "test-admin-secret-0123456789abcdef"
PREFIX = "broadcast_api_"


def numsub(redis_url: str, channel: str) -> int:
    client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        return int(dict(client.pubsub_numsub(PREFIX + channel))[(PREFIX + channel).encode()])
    finally:
        client.close()


def wait_subscribers(redis_url: str, channel: str, count: int, timeout: float = 40.0) -> None:
    """Wait until ``count`` processes listen on ``channel`` (bounded)."""
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.RedisError):
            last = numsub(redis_url, channel)
            if last == count:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{last} subscribers on {channel} instead of {count} after {timeout}s")


class Workers:
    """``uvicorn tests.broadcast_apps.app:app --workers N`` in its own process group."""

    def __init__(self, redis_url: str | None, workers: int = 3, env: dict[str, str] | None = None) -> None:
        self.redis_url = redis_url
        self.workers = workers
        self.port = free_port()
        self.extra_env = env or {}
        self.log = tempfile.NamedTemporaryFile(prefix="c2c-workers-", suffix=".log", delete=False)  # noqa: SIM115
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait_channel: str | None = "test_echo") -> None:
        env = {
            **os.environ,
            **({"C2C__REDIS__URL": self.redis_url} if self.redis_url else {}),
            "C2C__BROADCAST__SECRET": BROADCAST_SECRET,
            "C2C__AUTH__SECRET": AUTH_SECRET,
            "C2C__PROMETHEUS__PORT": "",
            "PYTHONPATH": str(ROOT),
            **self.extra_env,
        }
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "tests.broadcast_apps.app:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
                "--log-level",
                "info",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_port(self.port, timeout=40)
        if wait_channel and self.redis_url:
            wait_subscribers(self.redis_url, wait_channel, self.workers)

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        # Workers of the group that outlived the supervisor.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process = None

    def output(self) -> str:
        return Path(self.log.name).read_text(encoding="utf-8", errors="replace")

    def close(self) -> None:
        self.stop()
        self.log.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log.name)


@contextlib.contextmanager
def running_workers(
    redis_url: str | None, workers: int = 3, env: dict[str, str] | None = None
) -> Iterator[Workers]:
    service = Workers(redis_url, workers, env)
    try:
        service.start()
        yield service
    except BaseException:
        print(service.output()[-5000:])
        raise
    finally:
        service.close()


async def use_redis(settings, url: str, secret: str | None = "in-process-secret") -> None:  # type: ignore[no-untyped-def]
    """Start this process's broadcast on the Redis at ``url``, signed with ``secret``."""
    settings.redis.url = url
    settings.broadcast.secret = secret
    await broadcast.startup()
