"""GET /c2c/debug/stacks and /c2c/debug/memory in one process (the multi-worker test is in test_tools_workers)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

import c2casgiutils
from c2casgiutils import broadcast, redis_utils
from c2casgiutils.tools import debug
from tests.servers import free_port

SECRET = "debug-test-secret-with-enough-length-0123456789"
ADMIN = {"X-API-Key": SECRET}


@pytest.fixture
async def client(settings) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    settings.auth.secret = SECRET
    settings.redis.url = None
    app = FastAPI()
    app.mount("/c2c", c2casgiutils.app)
    await broadcast.startup()
    await debug.startup()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service.test") as http:
            yield http
    finally:
        debug.shutdown()
        await broadcast.shutdown()


@pytest.mark.parametrize("path", ["/c2c/debug/stacks", "/c2c/debug/memory"])
async def test_admin_only(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code in (401, 403)
    assert "processes" not in response.json()


async def _parked_coroutine(event: asyncio.Event) -> None:
    await event.wait()


async def test_stacks_show_threads_and_tasks(client: httpx.AsyncClient) -> None:
    release = threading.Event()
    thread = threading.Thread(target=release.wait, args=(30,), name="parked-test-thread", daemon=True)
    thread.start()
    done = asyncio.Event()
    task = asyncio.create_task(_parked_coroutine(done), name="parked-test-task")
    try:
        await asyncio.sleep(0)
        response = await client.get("/c2c/debug/stacks", headers=ADMIN)
    finally:
        release.set()
        done.set()
        await task
        thread.join(5)
    assert response.status_code == 200
    body = response.json()
    assert len(body["processes"]) == 1
    process = body["processes"][0]
    threads = {item["name"]: item for item in process["threads"]}
    assert "MainThread" in threads
    assert any("release.wait" in line or "wait" in line for line in threads["parked-test-thread"]["stack"])
    tasks = {item["name"]: item for item in process["tasks"]}
    assert tasks["parked-test-task"]["coroutine"].endswith("_parked_coroutine")
    assert any("_parked_coroutine" in line for line in tasks["parked-test-task"]["stack"])
    assert body["missing"] == []


async def test_memory_reports_rss_and_types(client: httpx.AsyncClient) -> None:
    class Marker:
        pass

    markers = [Marker() for _ in range(300_000)]
    response = await client.get("/c2c/debug/memory?limit=5", headers=ADMIN)
    assert response.status_code == 200
    process = response.json()["processes"][0]
    assert process["rss_bytes"] > 10 * 1024 * 1024
    assert len(process["top_types"]) == 5
    counts = [entry["count"] for entry in process["top_types"]]
    assert counts == sorted(counts, reverse=True)
    marker = [entry for entry in process["top_types"] if entry["type"].endswith("Marker")]
    assert marker
    assert marker[0]["count"] >= len(markers)
    assert process["gc_objects"] >= sum(counts)


async def test_memory_limit_is_validated(client: httpx.AsyncClient) -> None:
    response = await client.get("/c2c/debug/memory?limit=0", headers=ADMIN)
    assert response.status_code == 422
    response = await client.get("/c2c/debug/memory?limit=abc", headers=ADMIN)
    assert response.status_code == 422


async def test_without_broadcast_started_answers_for_this_process(settings) -> None:  # type: ignore[no-untyped-def]
    settings.auth.secret = SECRET
    debug.shutdown()
    app = FastAPI()
    app.mount("/c2c", c2casgiutils.app)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service.test") as http:
        response = await http.get("/c2c/debug/stacks", headers=ADMIN)
    body = response.json()
    assert body["broadcast"] is False
    assert len(body["processes"]) == 1


REDIS_PASSWORD = "debug-redis-Secret-0815"


@pytest.fixture
async def redis_down_client(settings) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    """The tools on a configured Redis that refuses connections (nothing listens on the port)."""
    settings.auth.secret = SECRET
    settings.redis.url = f"redis://127.0.0.1:{free_port()}/0?username=app&password={REDIS_PASSWORD}"
    settings.redis.sentinels = None
    settings.redis.connect_timeout = timedelta(seconds=0.2)
    settings.redis.socket_timeout = timedelta(seconds=0.2)
    app = FastAPI()
    app.mount("/c2c", c2casgiutils.app)
    await broadcast.startup()
    await debug.startup()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service.test") as http:
            yield http
    finally:
        debug.shutdown()
        await broadcast.shutdown()
        await redis_utils.cleanup()


@pytest.mark.parametrize("path", ["/c2c/debug/stacks", "/c2c/debug/memory"])
async def test_redis_down_gives_503_with_the_reason(redis_down_client: httpx.AsyncClient, path: str) -> None:
    response = await redis_down_client.get(path, headers=ADMIN)
    assert response.status_code == 503
    detail = response.json()["detail"]
    assert detail.startswith(f"{path} needs the broadcast to every process, which is unavailable: ")
    assert REDIS_PASSWORD not in response.text
    assert "Retry-After" in response.headers
