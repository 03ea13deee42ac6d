"""Metrics of a service with 3 uvicorn workers that die and respawn, as a real Prometheus scrapes them.

The service (``tests/prometheus_apps/service.py``) runs under real uvicorn with ``--workers 3``; a real
Prometheus server (Debian's ``prometheus``) scrapes its metrics port every second. Workers are SIGKILLed and
SIGTERMed while they hold requests in progress (uvicorn respawns them); the assertions go through Prometheus'
HTTP API. ``promtool check metrics`` lints the exposition in single- and multi-worker mode.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import missing
from tests.servers import find_binary, free_port, stop_process, uvicorn_workers, wait_for, wait_port

ROOT = Path(__file__).parent.parent
WORKERS = 3


def _prometheus_binaries() -> tuple[str, str]:
    prometheus = find_binary("prometheus")
    promtool = find_binary("promtool")
    if prometheus is None or promtool is None:
        missing("prometheus and promtool (Debian package prometheus)")
    assert prometheus is not None
    assert promtool is not None
    return prometheus, promtool


class Service:
    """The test service under ``uvicorn --workers N``, its state files and its metrics port."""

    def __init__(self, tmp_path: Path, workers: int, metrics: str = "instrumentator") -> None:
        self.state = tmp_path / "state"
        (self.state / "held").mkdir(parents=True)
        self.port = free_port()
        self.metrics_port = free_port()
        self.multiproc = tmp_path / "multiproc" if workers > 1 else None
        env = {k: v for k, v in os.environ.items() if not k.startswith("C2C__") and k != "PROMETHEUS_MULTIPROC_DIR"}
        env.update(
            {
                "C2C__PROMETHEUS__PORT": str(self.metrics_port),
                "C2C__PROMETHEUS__HOST": "127.0.0.1",
                "TEST_STATE_DIR": str(self.state),
                "TEST_METRICS": metrics,
                "PYTHONPATH": str(ROOT),
            }
        )
        if self.multiproc is not None:
            self.multiproc.mkdir()
            env["PROMETHEUS_MULTIPROC_DIR"] = str(self.multiproc)
        self.log = (tmp_path / "service.log").open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "tests.prometheus_apps.service:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(workers),
                "--timeout-graceful-shutdown",
                "1",
            ],
            env=env,
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.log_path = tmp_path / "service.log"
        self.url = f"http://127.0.0.1:{self.port}"
        try:
            wait_port(self.port, timeout=60)
            wait_port(self.metrics_port, timeout=30)
        except Exception:
            self.stop()
            raise

    def workers(self) -> list[int]:
        return uvicorn_workers(self.process.pid)

    def ready_workers(self, count: int) -> list[int]:
        """Wait until ``count`` workers run and each has started its metrics (its marker file exists)."""

        def ready() -> list[int] | None:
            pids = self.workers()
            if len(pids) != count:
                return None
            if self.multiproc is not None and not all(
                (self.multiproc / f"c2c-worker-{pid}.pid").exists() for pid in pids
            ):
                return None
            return pids

        pids: list[int] = wait_for(f"{count} ready workers", ready, timeout=60)
        return pids

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        with httpx.Client(timeout=30) as client:  # a new connection each time: the kernel picks a worker
            return client.get(self.url + path, **kwargs)

    def exposition(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10).text

    def stop(self) -> None:
        stop_process(self.process, signal.SIGINT, grace=30)
        self.log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


class PrometheusServer:
    """A real Prometheus scraping one target every second, with its own config and data dir (``flags`` added)."""

    def __init__(self, binary: str, tmp_path: Path, target_port: int, flags: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: service\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{target_port}']\n"
        )
        self.log = (tmp_path / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
                *flags,
            ],
            cwd=tmp_path,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        try:
            wait_for("Prometheus ready", lambda: httpx.get(self.url + "/-/ready", timeout=2).status_code == 200)
        except BaseException:
            self.stop()
            raise

    def query(self, expr: str) -> list[dict[str, Any]]:
        response = httpx.get(self.url + "/api/v1/query", params={"query": expr}, timeout=10)
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()["data"]["result"]
        return result

    def value(self, expr: str) -> float | None:
        """The value of a query that yields one series, None when it yields none."""
        result = self.query(expr)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def range_values(self, expr: str, start: float, end: float) -> list[float]:
        response = httpx.get(
            self.url + "/api/v1/query_range",
            params={"query": expr, "start": start, "end": end, "step": "1s"},
            timeout=10,
        )
        response.raise_for_status()
        result = response.json()["data"]["result"]
        assert len(result) == 1, result
        return [float(value) for _, value in result[0]["values"]]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log.close()


@pytest.fixture
def binaries() -> tuple[str, str]:
    return _prometheus_binaries()


def promtool_check(promtool: str, exposition: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, "check", "metrics"], input=exposition, capture_output=True, text=True, timeout=30, check=False
    )


class Holders:
    """Client threads that each hold one ``/hold`` request open until released (or their worker dies)."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.threads: list[threading.Thread] = []

    def start(self, count: int) -> None:
        for _ in range(count):
            thread = threading.Thread(target=self._hold, daemon=True)
            thread.start()
            self.threads.append(thread)

    def _hold(self) -> None:
        with contextlib.suppress(httpx.HTTPError):
            self.service.get("/hold")

    def held_by_pid(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for marker in (self.service.state / "held").iterdir():
            pid = int(marker.name.split("-")[0])
            counts[pid] = counts.get(pid, 0) + 1
        return counts

    def join(self) -> None:
        for thread in self.threads:
            thread.join(70)


STACKS = ["instrumentator", "c2c"]  # prometheus-fastapi-instrumentator, c2casgiutils.prometheus.PrometheusMiddleware


@pytest.fixture(params=STACKS)
def service(tmp_path: Path, binaries: tuple[str, str], request: pytest.FixtureRequest) -> Iterator[Service]:
    del binaries  # only to skip (or fail in CI) before starting anything when Prometheus is missing
    started = Service(tmp_path, WORKERS, metrics=request.param)
    yield started
    started.stop()


def _hello_total(prometheus: PrometheusServer) -> float | None:
    return prometheus.value('sum(http_requests_total{handler="/hello"})')


def test_totals_gauges_and_process_metrics_through_worker_deaths(
    service: Service, binaries: tuple[str, str], tmp_path: Path
) -> None:
    prometheus_binary, promtool = binaries
    workers = service.ready_workers(WORKERS)
    prometheus = PrometheusServer(prometheus_binary, tmp_path, service.metrics_port)
    holders = Holders(service)
    try:
        # The first request, seen by Prometheus before the others, so that increase() covers all of them.
        assert service.get("/hello").status_code == 200
        wait_for("first request scraped", lambda: _hello_total(prometheus) == 1)
        start = time.time()
        before = 150
        answered: set[int] = set()
        for _ in range(before - 1):
            response = service.get("/hello")
            assert response.status_code == 200
            answered.add(response.json()["pid"])
        assert len(answered) >= 2, "the requests never reached a second worker"

        # Every worker runs the health check and passes.
        passed: set[int] = set()
        for _ in range(300):
            if passed >= set(workers):
                break
            response = service.get("/c2c/health_checks")
            assert response.status_code == 200, response.text
            passed.add(response.json()["entities"][0]["payload"]["pid"])
        assert passed >= set(workers), f"health checks reached only {passed} of {workers}"

        # Requests held in progress until two workers at least hold some: which worker accepts a connection is the
        # kernel's choice, so the failing one is chosen among them afterwards.
        for _ in range(10):
            holders.start(3)
            held = wait_for(
                "held requests",
                lambda: sum(holders.held_by_pid().values()) == len(holders.threads) and holders.held_by_pid(),
            )
            if len(held) >= 2:
                break
        else:
            pytest.fail(f"held requests never spread over two workers: {held}")

        # One of them (A) fails its health check once; the others pass theirs.
        failing = min(held, key=lambda pid: held[pid])
        flag = service.state / f"fail-{failing}"
        flag.touch()
        answers: list[tuple[int, int]] = []
        for _ in range(300):
            response = service.get("/c2c/health_checks")
            answers.append((response.json()["entities"][0]["payload"]["pid"], response.status_code))
            if answers[-1][0] == failing:
                break
        flag.unlink()
        assert answers[-1] == (failing, 500), answers
        assert all(status == 200 for pid, status in answers[:-1]), answers
        failure = 'sum(c2casgiutils_health_checks_failure{name="Flag"})'
        wait_for("health failure gauge at 1", lambda: prometheus.value(failure) == 1)
        inprogress = "sum(http_requests_inprogress)"
        wait_for(
            "in-progress gauge counts the held requests", lambda: prometheus.value(inprogress) == len(holders.threads)
        )
        killed = failing
        terminated = max((pid for pid in held if pid != killed), key=lambda pid: held[pid])
        remaining = len(holders.threads) - held[killed] - held[terminated]
        os.kill(killed, signal.SIGKILL)
        os.kill(terminated, signal.SIGTERM)

        # The dead workers' gauges are gone: in progress is what the surviving worker holds, no failure.
        wait_for("in-progress gauge of the surviving worker only", lambda: prometheus.value(inprogress) == remaining)
        wait_for("health failure gauge back to 0 once the failing worker died", lambda: prometheus.value(failure) == 0)
        workers_after = service.ready_workers(WORKERS)
        assert killed not in workers_after
        assert terminated not in workers_after
        (service.state / "release").touch()
        holders.join()
        wait_for("in-progress gauge back to 0", lambda: prometheus.value(inprogress) == 0)

        # The respawned workers answer and pass their checks; totals stay exact.
        after = 150
        for _ in range(after):
            assert service.get("/hello").status_code == 200
        for _ in range(6):
            assert service.get("/c2c/health_checks").status_code == 200
        total = before + after
        wait_for("total of /hello exact", lambda: _hello_total(prometheus) == total)
        wait_for("health failure gauge still 0 after passing checks", lambda: prometheus.value(failure) == 0)

        # Process metrics of the live workers only, one series each, labelled by pid.
        def scraped_pids() -> set[int]:
            return {int(series["metric"]["pid"]) for series in prometheus.query("process_start_time_seconds")}

        wait_for("process metrics of exactly the live workers", lambda: scraped_pids() == set(workers_after))
        for name in ("process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds"):
            assert {int(series["metric"]["pid"]) for series in prometheus.query(name)} == set(workers_after), name

        # No counter reset, no spike: monotonic series, no reset, increase() equal to what was sent.
        end = time.time()
        series = prometheus.range_values('sum(http_requests_total{handler="/hello"})', start, end)
        assert all(a <= b for a, b in _pairs(series)), series
        assert series[-1] <= total  # the last step may fall just before the last scrape
        assert prometheus.value('sum(resets(http_requests_total{handler="/hello"}[5m]))') == 0
        window = int(end - start) + 5
        increase = prometheus.value(f'sum(increase(http_requests_total{{handler="/hello"}}[{window}s]))')
        assert increase is not None
        assert total - 1 - 5 <= increase <= (total - 1) * 1.1, increase

        # promtool accepts the multi-worker exposition.
        check = promtool_check(promtool, service.exposition())
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        (service.state / "release").touch()
        prometheus.stop()
    service.stop()
    # uvicorn logs the requests it cancels after --timeout-graceful-shutdown (the SIGTERMed worker's): no other.
    output = service.output()
    assert output.count("Traceback") == output.count("CancelledError: Task cancelled, timeout graceful"), output


def _pairs(values: list[float]) -> Iterator[tuple[float, float]]:
    return zip(values, values[1:], strict=False)


@pytest.mark.parametrize("metrics", STACKS)
def test_promtool_accepts_single_worker_exposition(tmp_path: Path, binaries: tuple[str, str], metrics: str) -> None:
    _, promtool = binaries
    service = Service(tmp_path, workers=1, metrics=metrics)
    try:
        for path in ("/hello", "/items/3", "/nowhere", "/c2c/health_checks"):
            service.get(path)
        exposition = service.exposition()
    finally:
        service.stop()
    assert "process_resident_memory_bytes " in exposition  # the default registry: no pid label
    assert 'http_requests_total{handler="/items/{item_id}",method="GET",status="2xx"} 1.0' in exposition
    check = promtool_check(promtool, exposition)
    assert check.returncode == 0, check.stdout + check.stderr


def _send_partial_body(port: int, path: str) -> None:
    """Announce a 1000-byte body, send 10 bytes, and hang up."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            "Content-Length: 1000\r\n\r\nsecret=abc".encode()
        )
        time.sleep(0.2)  # the request reached the route, which waits for the rest of the body


@pytest.mark.parametrize("metrics", STACKS)
def test_client_disconnect_during_body_read_is_no_server_error(tmp_path: Path, metrics: str) -> None:
    service = Service(tmp_path, workers=1, metrics=metrics)
    try:
        for path in ("/c2c/auth/login", "/upload"):
            _send_partial_body(service.port, path)

        def counted() -> dict[str, str]:
            found = {}
            for line in service.exposition().splitlines():
                if line.startswith("http_requests_total{") and 'method="POST"' in line:
                    handler = line.split('handler="', 1)[1].split('"', 1)[0]
                    found[handler] = line.split('status="', 1)[1].split('"', 1)[0]
            return found if len(found) == 2 else {}

        assert wait_for("both requests counted", counted) == {"/c2c/auth/login": "4xx", "/upload": "4xx"}
    finally:
        service.stop()
    output = service.output()
    assert "Traceback" not in output, output
    assert "ERROR" not in output, output
