"""Stacks, memory and versions from a service running several uvicorn workers with real Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.admin_fixtures import SECRET, UvicornService
from tests.servers import RedisServer

pytestmark = pytest.mark.slow

WORKERS = 2
ADMIN = {"X-API-Key": SECRET}


@pytest.fixture(scope="module")
def service(redis_server: RedisServer) -> Iterator[UvicornService]:
    server = UvicornService(env={"C2C__REDIS__URL": redis_server.url, "C2C__BROADCAST__TIMEOUT": "5"}, workers=WORKERS)
    server.start(timeout=60)
    # Each worker subscribes when its lifespan starts: wait (bounded) until every worker answers.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if len(_get(server, "/c2c/versions")["processes"]) == WORKERS:
            break
        time.sleep(0.2)
    yield server
    server.close()


def _get(service: UvicornService, path: str) -> dict[str, Any]:
    response = httpx.get(f"{service.url}{path}", headers=ADMIN, timeout=20)
    assert response.status_code == 200, response.text
    return response.json()


def _one_entry_per_worker(service: UvicornService, body: dict[str, Any]) -> None:
    assert body["broadcast"] is True
    assert body["missing"] == []
    pids = [process["pid"] for process in body["processes"]]
    assert len(set(pids)) == WORKERS
    # Children of the uvicorn supervisor (it also has a multiprocessing helper child, hence <=).
    assert set(pids) <= service.worker_pids()


def test_stacks_from_every_worker(service: UvicornService) -> None:
    body = _get(service, "/c2c/debug/stacks")
    _one_entry_per_worker(service, body)
    for process in body["processes"]:
        assert any(thread["name"] == "MainThread" for thread in process["threads"])
        # Every worker has its uvicorn server task, and the one that received the broadcast its handler.
        assert any(task["coroutine"].endswith("Server.serve") for task in process["tasks"])


def test_memory_from_every_worker(service: UvicornService) -> None:
    body = _get(service, "/c2c/debug/memory?limit=3")
    _one_entry_per_worker(service, body)
    for process in body["processes"]:
        assert process["rss_bytes"] > 0
        assert process["rss_source"] == "VmRSS"
        assert len(process["top_types"]) == 3


def test_versions_from_every_worker(service: UvicornService) -> None:
    body = _get(service, "/c2c/versions")
    _one_entry_per_worker(service, body)
    assert body["consistent"] is True
    assert all(not process["differs"] for process in body["processes"])
    first, second = body["processes"]
    assert first["packages"] == second["packages"]


def test_admin_only_on_every_worker(service: UvicornService) -> None:
    for path in ("/c2c/debug/stacks", "/c2c/debug/memory", "/c2c/versions"):
        response = httpx.get(f"{service.url}{path}", timeout=10)
        assert response.status_code in (401, 403)
