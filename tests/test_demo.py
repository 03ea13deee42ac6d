"""The demo service as README runs it: real uvicorn processes, metrics summed over several workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.servers import RedisServer, free_port, stop_process, wait_port

ROOT = Path(__file__).parent.parent
DEMO = ROOT / "examples" / "demo"


class DemoServer:
    def __init__(
        self, tmp_path: Path, workers: int = 1, env: dict[str, str] | None = None, args: tuple[str, ...] = ()
    ) -> None:
        self.port = free_port()
        self.metrics_port = free_port()
        base = {k: v for k, v in os.environ.items() if not k.startswith("C2C__") and k != "PROMETHEUS_MULTIPROC_DIR"}
        self.env = {
            **base,
            "C2C__PROMETHEUS__PORT": str(self.metrics_port),
            "DEMO_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'demo.sqlite3'}",
            **(env or {}),
        }
        if workers > 1:
            directory = tmp_path / "metrics"
            directory.mkdir()
            self.env["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--app-dir", str(DEMO), "app:app", "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", str(workers), "--timeout-graceful-shutdown", "5", *args],
            env=self.env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        try:
            wait_port(self.port, timeout=60)
            self._wait_ready()
        except Exception:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                # Not "/": the tests count the requests to "/" from the metrics, and a probe's record may land
                # after its answer (the metrics are recorded once the answer is sent).
                if httpx.get(self.url + "/c2c/health_checks?tags=liveness", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError("the demo did not answer")

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10).text

    def stop(self) -> str:
        stop_process(self.process, signal.SIGINT, grace=30)
        assert self.process.stdout is not None
        return self.process.stdout.read().decode(errors="replace")


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[DemoServer]:
    server = DemoServer(tmp_path)
    yield server
    server.stop()


def _request_total(metrics_text: str, handler: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "http_requests_total" and sample.labels.get("handler") == handler:
                total += sample.value
    return total


def test_demo_serves_admin_page_health_and_metrics(demo: DemoServer) -> None:
    page = httpx.get(demo.url + "/c2c/", timeout=10)
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert "default-src" in page.headers["content-security-policy"]
    # RequestIdMiddleware is wired: a caller's well-formed id comes back (log lines and audit records carry it).
    assert httpx.get(demo.url + "/", headers={"X-Request-ID": "demo-req-1"}, timeout=10).headers["X-Request-ID"] == (
        "demo-req-1"
    )

    health = httpx.get(demo.url + "/c2c/health_checks", timeout=30)
    assert health.status_code == 200, health.text
    names = {entity["name"] for entity in health.json()["entities"]}
    assert {"Liveness", "SQLAlchemy", "Alembic"} <= names

    for _ in range(3):
        assert httpx.get(demo.url + "/", timeout=10).status_code == 200
    families = {family.name: family for family in text_string_to_metric_families(demo.metrics())}
    assert "http_requests" in families
    assert _settled_total(demo, "/", 4) == 4  # the request with an id above and these three

    answers = httpx.get(demo.url + "/echo", params={"message": "hi"}, timeout=30).json()
    assert answers == [
        {"hostname": answers[0]["hostname"], "pid": answers[0]["pid"],
         "payload": {"message": "Broadcast echo: hi", "pid": answers[0]["pid"]}}
    ]


def test_demo_failing_route_shows_the_error_answer_and_its_log_line(tmp_path: Path) -> None:
    """The newcomer's tour: /fail answers problem+json with a trace id, the JSON log line has the same id."""
    server = DemoServer(tmp_path, args=("--log-config", str(DEMO / "logging.yaml")))
    try:
        failed = httpx.get(server.url + "/fail", timeout=10)
        missing = httpx.get(server.url + "/items/0", timeout=10)
        invalid = httpx.get(server.url + "/items/x", timeout=10)
        traced = httpx.get(
            server.url + "/items/5", headers={"traceparent": f"00-{'ab' * 16}-00f067aa0ba902b7-01"}, timeout=10
        )
    finally:
        output = server.stop()
    assert failed.status_code == 500
    assert failed.headers["content-type"] == "application/problem+json"
    body = failed.json()
    assert (body["title"], body["status"]) == ("Internal Server Error", 500)
    assert "fails on purpose" not in failed.text  # the code's message is for the log, not the caller
    assert (missing.status_code, missing.json()["detail"]) == (404, "There is no item 0")
    assert missing.headers["content-type"] == invalid.headers["content-type"] == "application/problem+json"
    assert invalid.status_code == 422
    assert traced.json()["trace_id"] == "ab" * 16
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    error_line = next(line for line in lines if line["logger"] == "c2casgiutils.errors")
    assert error_line["trace_id"] == body["trace_id"]
    assert error_line["request_id"] == body["request_id"] == failed.headers["x-request-id"]
    assert "fails on purpose" in error_line["exception"]
    access = [line for line in lines if line["logger"] == "uvicorn.access" and line["trace_id"] == "ab" * 16]
    assert len(access) == 1


def _settled_total(server: DemoServer, handler: str, expected: float) -> float:
    """The request total of ``handler`` once it reaches ``expected`` (bounded): a request is recorded just after its
    answer is sent, so the last ones may not be counted yet when the client reads the metrics."""
    deadline = time.monotonic() + 10
    total = _request_total(server.metrics(), handler)
    while total < expected and time.monotonic() < deadline:
        time.sleep(0.1)
        total = _request_total(server.metrics(), handler)
    return total


def _spread_requests(url: str, minimum: int) -> tuple[int, set[int]]:
    """Requests on fresh connections until both workers answered (bounded); returns (count, pids)."""
    pids: set[int] = set()
    count = 0
    while count < minimum or (len(pids) < 2 and count < 400):
        with httpx.Client(timeout=10) as client:  # new connection: the kernel picks a worker
            response = client.get(url + "/")
        assert response.status_code == 200
        pids.add(response.json()["pid"])
        count += 1
    return count, pids


@pytest.mark.slow
def test_metrics_total_over_two_workers_survives_a_dead_worker(tmp_path: Path) -> None:
    server = DemoServer(tmp_path, workers=2)
    try:
        before = _request_total(server.metrics(), "/")
        count, pids = _spread_requests(server.url, 30)
        assert len(pids) == 2, "requests never reached the second worker"
        assert _settled_total(server, "/", before + count) == before + count

        # A worker dies: its counters stay in the total, and the metrics port is still served.
        os.kill(sorted(pids)[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        total: float | None = None
        while time.monotonic() < deadline:
            try:
                total = _request_total(server.metrics(), "/")
                break
            except httpx.HTTPError:
                time.sleep(0.5)
        assert total == before + count
    finally:
        output = server.stop()
    assert "Address already in use" not in output
    assert "Traceback" not in output, output


@pytest.mark.slow
def test_demo_with_redis_broadcasts_to_every_worker(tmp_path: Path, redis_server: RedisServer) -> None:
    server = DemoServer(tmp_path, workers=2, env={"C2C__REDIS__URL": redis_server.url})
    try:
        health = httpx.get(server.url + "/c2c/health_checks", params={"tags": "redis"}, timeout=30)
        assert health.status_code == 200, health.text
        assert [entity["name"] for entity in health.json()["entities"]] == ["Redis"]
        deadline = time.monotonic() + 30
        answers: list[dict[str, Any]] = []
        while time.monotonic() < deadline:  # both workers must have subscribed
            answers = httpx.get(server.url + "/echo", params={"message": "x"}, timeout=30).json()
            if len(answers) == 2:
                break
            time.sleep(0.5)
        assert len({answer["pid"] for answer in answers}) == 2
    finally:
        server.stop()


def _demo_layout(tmp_path: Path) -> Path:
    """A copy of the repository's layout for ``scripts/demo``: its ``.venv/bin/python`` skips ``pip install``
    (the checkout's environment is already set up, and must not be reinstalled under the other tests) and runs
    everything else in the real interpreter."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    (repo / "scripts" / "demo").write_bytes((ROOT / "scripts" / "demo").read_bytes())
    (repo / "scripts" / "demo").chmod(0o755)
    (repo / "examples").symlink_to(ROOT / "examples")
    bin_dir = repo / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "uvicorn").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m uvicorn "$@"\n')
    (bin_dir / "uvicorn").chmod(0o755)
    (bin_dir / "python").write_text(f'#!/bin/sh\n[ "$1 $2" = "-m pip" ] && exit 0\nexec "{sys.executable}" "$@"\n')
    (bin_dir / "python").chmod(0o755)
    return repo


def _read_demo_banner(process: subprocess.Popen[str], deadline: float) -> dict[str, str]:
    """The admin URL and secret that scripts/demo prints before it starts uvicorn."""
    assert process.stdout is not None
    found: dict[str, str] = {}
    seen: list[str] = []
    while len(found) < 2:
        assert time.monotonic() < deadline, "scripts/demo printed no admin URL and secret:\n" + "".join(seen)
        line = process.stdout.readline()
        assert line or process.poll() is None, "scripts/demo exited:\n" + "".join(seen)
        seen.append(line)
        if line.startswith("Admin page: "):
            found["url"] = line.removeprefix("Admin page: ").strip()
        elif line.startswith("Admin secret "):
            found["secret"] = line.rsplit(": ", 1)[1].strip()
    return found


def test_demo_script_opens_the_admin_page_with_a_secret_of_its_own(tmp_path: Path) -> None:
    """``scripts/demo`` with no auth configured: it prints the admin URL and a random secret that opens it."""
    port, metrics_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("C2C__", "DEMO_", "PROMETHEUS_MULTIPROC_DIR"))}
    env.update(
        DEMO_PORT=str(port),
        C2C__PROMETHEUS__PORT=str(metrics_port),
        DEMO_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'demo.sqlite3'}",
    )
    repo = _demo_layout(tmp_path)
    secrets: list[str] = []
    for _ in range(2):  # two runs: each makes its own secret
        process = subprocess.Popen(
            [str(repo / "scripts" / "demo")], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True, start_new_session=True,
        )
        try:
            banner = _read_demo_banner(process, time.monotonic() + 60)
            assert banner["url"] == f"http://127.0.0.1:{port}/c2c/"
            secret = banner["secret"]
            assert len(secret) >= 32
            secrets.append(secret)
            wait_port(port, timeout=60)
            with httpx.Client(timeout=10) as anonymous:
                status = anonymous.get(f"http://127.0.0.1:{port}/c2c/auth/status").json()
                assert status["auth_type"] == "secret"
                assert status["is_admin"] is False
                closed = anonymous.get(f"http://127.0.0.1:{port}/c2c/logging/level", params={"name": "root"})
                assert closed.status_code in (401, 403)
                page = anonymous.get(banner["url"])
                assert page.status_code == 200
                assert "The admin tools are closed" not in page.text
            with httpx.Client(timeout=10, base_url=f"http://127.0.0.1:{port}") as admin:
                wrong = admin.post("/c2c/auth/login", json={"secret": secret + "x"})
                assert wrong.status_code == 401
                login = admin.post("/c2c/auth/login", json={"secret": secret})
                assert login.status_code < 400, login.text
                assert admin.get("/c2c/auth/status").json()["is_admin"] is True
                levels = admin.get("/c2c/logging/level", params={"name": "root"})
                assert levels.status_code == 200, levels.text
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(10)
    assert secrets[0] != secrets[1]


def test_demo_script_keeps_a_configured_secret(tmp_path: Path) -> None:
    """With C2C__AUTH__SECRET set, scripts/demo makes none and prints none."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("C2C__", "DEMO_", "PROMETHEUS_MULTIPROC_DIR"))}
    env.update(
        DEMO_PORT=str(port),
        C2C__PROMETHEUS__PORT=str(free_port()),
        C2C__AUTH__SECRET="a-secret-chosen-by-the-user-0123456789",
        C2C__AUTH__JWT__COOKIE__SECURE="false",  # plain HTTP
        DEMO_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'demo.sqlite3'}",
    )
    repo = _demo_layout(tmp_path)
    log = tmp_path / "demo.log"
    with log.open("w", encoding="utf-8") as output:
        process = subprocess.Popen(
            [str(repo / "scripts" / "demo")], env=env, cwd=tmp_path, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_port(port, timeout=60)
        with httpx.Client(timeout=10, base_url=f"http://127.0.0.1:{port}") as admin:
            assert admin.post("/c2c/auth/login", json={"secret": env["C2C__AUTH__SECRET"]}).status_code < 400
            assert admin.get("/c2c/auth/status").json()["is_admin"] is True
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    assert "Admin secret" not in log.read_text(encoding="utf-8")
