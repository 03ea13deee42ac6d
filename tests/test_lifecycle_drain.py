"""The drain on SIGTERM under real uvicorn: one process, and ``--workers 2`` with SIGTERM to the supervisor.

Everything is observed from outside, as a load balancer and an operator see it: probes, headers, connections,
exit, and the files and Redis entries the processes leave.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.lifecycle_servers import LIVENESS, READINESS, UvicornInstance
from tests.servers import RedisServer, free_port, wait_for

DRAIN = 3.0


@pytest.fixture
def instances() -> Iterator[list[UvicornInstance]]:
    started: list[UvicornInstance] = []
    yield started
    for instance in started:
        instance.close()


def _raw_get(sock: socket.socket, path: str = "/") -> tuple[int, dict[str, str]]:
    """One request on an open connection; the status and headers of its answer (the body is small JSON)."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the connection closed without an answer"
        data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    status_line, *lines = head.split("\r\n")
    headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in lines)}
    length = int(headers.get("content-length", "0"))
    body = data.split(b"\r\n\r\n", 1)[1]
    while len(body) < length:
        body += sock.recv(65536)
    return int(status_line.split()[1]), headers


def _probe(url: str) -> tuple[int, dict[str, Any]]:
    response = httpx.get(url, timeout=10)
    entities = {entity["name"]: entity for entity in response.json()["entities"]}
    return response.status_code, entities


def _wait_all_accepting(instance: UvicornInstance, workers: list[int]) -> None:
    """Until the readiness payload lists exactly ``workers``, each accepting."""
    expected = {str(pid): "accepting" for pid in workers}
    wait_for(
        "every worker accepting",
        lambda: _probe(instance.url + READINESS)[1]["ReadinessState"]["payload"]["workers"] == expected,
        30,
    )


def _in_background(function: Any) -> tuple[threading.Thread, list[Any]]:
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(function()), daemon=True)
    thread.start()
    return thread, results


def _serve_until_refused(url: str, timeout: float) -> tuple[float, list[str]]:
    """New connections, one after the other, until one fails: (time of the last answer, its Connection headers)."""
    last, headers = time.monotonic(), []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url + "/", timeout=5)
        except httpx.HTTPError:
            return last, headers
        assert response.status_code == 200
        last = time.monotonic()
        headers.append(response.headers.get("connection", ""))
        time.sleep(0.05)
    pytest.fail(f"still served {timeout} s after SIGTERM")


@pytest.mark.slow
def test_one_process_drains_then_shuts_down(tmp_path: Path, instances: list[UvicornInstance]) -> None:
    instance = UvicornInstance(tmp_path, drain=DRAIN).start()
    instances.append(instance)
    status, entities = _probe(instance.url + READINESS)
    assert status == 200
    assert entities["ReadinessState"]["payload"]["state"] == "accepting"

    idle = socket.create_connection(("127.0.0.1", instance.port), timeout=10)  # keep-alive, idle at SIGTERM
    assert _raw_get(idle)[1].get("connection") != "close"
    slow, slow_result = _in_background(lambda: httpx.get(instance.url + "/slow?seconds=2", timeout=30))
    time.sleep(0.3)

    sent = time.monotonic()
    instance.send(signal.SIGTERM)
    status, entities = wait_for(
        "readiness 503", lambda: (lambda probe: probe[0] == 503 and probe)(_probe(instance.url + READINESS)), 5
    )
    assert entities["ReadinessState"]["status_code"] == 503
    assert entities["ReadinessState"]["payload"]["state"] == "draining"
    status, entities = _probe(instance.url + LIVENESS)
    assert status == 200
    assert entities["LivenessState"]["payload"]["state"] == "draining"

    # The idle keep-alive connection is still open; its next answer closes it.
    status, headers = _raw_get(idle)
    assert (status, headers["connection"]) == (200, "close")
    assert idle.recv(1) == b"", "uvicorn closes the connection after an answer with Connection: close"
    idle.close()

    last_answer, connection_headers = _serve_until_refused(instance.url, DRAIN + 30)
    assert last_answer - sent >= DRAIN - 0.5, "new connections are served for the whole drain"
    assert set(connection_headers) == {"close"}
    slow.join(30)
    assert slow_result[0].status_code == 200
    assert slow_result[0].json()["state"] == "draining"
    assert slow_result[0].headers["connection"] == "close"
    returncode = instance.wait(30)
    assert returncode in (0, -signal.SIGTERM), instance.output()
    assert "Traceback" not in instance.output()
    assert list((instance.state_dir / "c2c-availability").iterdir()) == []


@pytest.mark.slow
def test_sigterm_to_the_supervisor_drains_every_worker_and_leaves_nothing_behind(
    tmp_path: Path, instances: list[UvicornInstance], redis_server: RedisServer
) -> None:
    env = {"C2C__REDIS__URL": redis_server.url, "C2C__PROMETHEUS__PORT": str(free_port())}
    instance = UvicornInstance(tmp_path, workers=2, drain=DRAIN, env=env).start()
    instances.append(instance)
    workers = wait_for("2 workers", lambda: len(instance.workers()) == 2 and instance.workers(), 60)
    client = redis.Redis.from_url(redis_server.url)
    presence_key = "broadcast_api___presence__"

    def present() -> set[int]:
        return {json.loads(value)["pid"] for value in client.hgetall(presence_key).values()} & set(workers)

    wait_for("both workers in the broadcast presence", lambda: present() == set(workers), 30)
    _wait_all_accepting(instance, workers)
    metrics_files = {path.name for path in instance.state_dir.iterdir()}
    assert {f"c2c-worker-{pid}.pid" for pid in workers} <= metrics_files

    sent = time.monotonic()
    instance.send(signal.SIGTERM)  # the supervisor only, as Kubernetes signals the container's first process
    status, entities = wait_for(
        "readiness 503, both workers draining",
        lambda: (
            lambda probe: probe[0] == 503 and len(probe[1]["ReadinessState"]["payload"]["workers"]) == 2 and probe
        )(_probe(instance.url + READINESS)),
        5,
    )
    assert set(entities["ReadinessState"]["payload"]["workers"].values()) == {"draining"}
    last_answer, connection_headers = _serve_until_refused(instance.url, DRAIN + 30)
    assert last_answer - sent >= DRAIN - 0.5
    assert set(connection_headers) == {"close"}
    assert instance.wait(60) in (0, -signal.SIGTERM), instance.output()
    assert "Traceback" not in instance.output()

    # At the end every worker is marked gone: broadcast presence, metrics markers and live gauges, availability.
    assert present() == set()
    left = {path.name for path in instance.state_dir.iterdir()}
    assert not {name for name in left if name.startswith("c2c-worker-") or name.startswith("gauge_live")}, left
    assert list((instance.state_dir / "c2c-availability").iterdir()) == []


@pytest.mark.slow
def test_ctrl_c_does_not_wait_for_the_drain(tmp_path: Path, instances: list[UvicornInstance]) -> None:
    instance = UvicornInstance(tmp_path, workers=2, drain=60).start()
    instances.append(instance)
    wait_for("2 workers", lambda: len(instance.workers()) == 2, 60)
    sent = time.monotonic()
    instance.send(signal.SIGINT, group=True)  # what Ctrl+C does in a terminal
    instance.wait(30)
    assert time.monotonic() - sent < 20, "SIGINT must not wait for the 60 s drain"


@pytest.mark.slow
def test_drain_off_stops_at_once(tmp_path: Path, instances: list[UvicornInstance]) -> None:
    instance = UvicornInstance(tmp_path, drain=0).start()
    instances.append(instance)
    sent = time.monotonic()
    instance.send(signal.SIGTERM)
    instance.wait(30)
    assert time.monotonic() - sent < 10


@pytest.mark.slow
def test_a_restarted_instance_ignores_the_state_left_behind(tmp_path: Path, instances: list[UvicornInstance]) -> None:
    instance = UvicornInstance(tmp_path, workers=2, drain=1)
    instances.append(instance)
    folder = instance.state_dir / "c2c-availability"
    folder.mkdir()
    # Left by an earlier run: a worker SIGKILLed while accepting, whose pid a live process now has.
    squatter = UvicornInstance(tmp_path / "squatter").start()  # any live process with another start time
    instances.append(squatter)
    (folder / f"{squatter.pid}.json").write_text(
        json.dumps({"pid": squatter.pid, "start_time": 1, "state": "accepting", "since": 0})
    )
    (folder / "999999999.json").write_text(json.dumps({"pid": 999999999, "state": "draining", "since": 0}))

    instance.start()
    workers = wait_for("2 workers", lambda: len(instance.workers()) == 2 and instance.workers(), 60)
    _wait_all_accepting(instance, workers)
    assert sorted(path.name for path in folder.iterdir()) == sorted(f"{pid}.json" for pid in workers)
    # The stale "accepting" record does not hold the instance in service: SIGTERM makes it drain.
    instance.send(signal.SIGTERM)
    wait_for("readiness 503", lambda: _probe(instance.url + READINESS)[0] == 503, 5)
    instance.wait(60)
