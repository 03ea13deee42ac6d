"""tools/log_levels.py: admin-only endpoints, validation, storage in Redis, applied in every process."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import redis
from fastapi import FastAPI

import c2casgiutils
from c2casgiutils import broadcast, log_levels, redis_utils
from tests.broadcast_fixtures import AUTH_SECRET, BROADCAST_SECRET, running_workers
from tests.servers import RedisServer

pytestmark = pytest.mark.timeout(120)
ADMIN = {"X-API-Key": AUTH_SECRET}


@pytest.fixture
async def client(settings) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    settings.auth.secret = AUTH_SECRET
    settings.redis.url = None
    settings.broadcast.secret = None
    main = FastAPI()
    main.mount("/c2c", c2casgiutils.app)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=main), base_url="http://test") as http:
        yield http
    await broadcast.shutdown()
    await redis_utils.cleanup()


def unique_logger() -> str:
    return f"tests.logging_levels.{uuid.uuid4().hex[:8]}"


async def test_every_route_requires_admin_access(client: httpx.AsyncClient) -> None:
    name = unique_logger()
    requests = [
        client.get("/c2c/logging/level", params={"name": name}),
        client.post("/c2c/logging/level", json={"name": name, "level": "DEBUG"}),
        client.get("/c2c/logging/overrides"),
        client.delete(f"/c2c/logging/overrides/{name}"),
    ]
    for request in requests:
        response = await request
        assert response.status_code in (401, 403), response.text
    for headers in ({"X-API-Key": "wrong"},):
        response = await client.post("/c2c/logging/level", json={"name": name, "level": "DEBUG"}, headers=headers)
        assert response.status_code in (401, 403)
    assert logging.getLogger(name).level == logging.NOTSET


async def test_get_level(client: httpx.AsyncClient) -> None:
    name = unique_logger()
    logging.getLogger(name).setLevel(logging.ERROR)
    response = await client.get("/c2c/logging/level", params={"name": name}, headers=ADMIN)
    assert response.status_code == 200
    assert response.json() == {"name": name, "level": "ERROR", "effective_level": "ERROR"}
    child = await client.get("/c2c/logging/level", params={"name": name + ".child"}, headers=ADMIN)
    assert child.json()["level"] == "NOTSET"
    assert child.json()["effective_level"] == "ERROR"
    root = await client.get("/c2c/logging/level", params={"name": "root"}, headers=ADMIN)
    assert root.json()["level"] == logging.getLevelName(logging.getLogger().level)
    missing = await client.get("/c2c/logging/level", headers=ADMIN)
    assert missing.status_code == 422


async def test_invalid_level_is_422_with_the_accepted_levels(client: httpx.AsyncClient) -> None:
    name = unique_logger()
    response = await client.post("/c2c/logging/level", json={"name": name, "level": "LOUD"}, headers=ADMIN)
    assert response.status_code == 422
    assert "CRITICAL, ERROR, WARNING, INFO, DEBUG, NOTSET" in response.text
    empty = await client.post("/c2c/logging/level", json={"name": "", "level": "INFO"}, headers=ADMIN)
    assert empty.status_code == 422
    assert logging.getLogger(name).level == logging.NOTSET
    overrides = (await client.get("/c2c/logging/overrides", headers=ADMIN)).json()["overrides"]
    assert name not in {o["name"] for o in overrides}


async def test_set_list_delete_without_redis(client: httpx.AsyncClient) -> None:
    name = unique_logger()
    logging.getLogger(name).setLevel(logging.WARNING)
    response = await client.post("/c2c/logging/level", json={"name": name, "level": "debug"}, headers=ADMIN)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["level"] == "DEBUG"
    assert body["processes"] == [
        {
            "hostname": body["processes"][0]["hostname"],
            "pid": os.getpid(),
            "status": "ok",
            "message": None,
            "level": "DEBUG",
            "effective_level": "DEBUG",
        }
    ]
    assert logging.getLogger(name).level == logging.DEBUG
    overrides = (await client.get("/c2c/logging/overrides", headers=ADMIN)).json()["overrides"]
    assert {"name": name, "level": "DEBUG"} in overrides

    deleted = await client.delete(f"/c2c/logging/overrides/{name}", headers=ADMIN)
    assert deleted.status_code == 200
    assert deleted.json()["level"] == "WARNING"  # back to the level from before the override
    assert logging.getLogger(name).level == logging.WARNING
    assert (await client.delete(f"/c2c/logging/overrides/{name}", headers=ADMIN)).status_code == 404


async def test_stored_in_redis_and_restored_at_startup(client: httpx.AsyncClient, settings, redis_server) -> None:  # type: ignore[no-untyped-def]
    settings.redis.url = redis_server.url
    settings.tools.logging.redis_prefix = f"test_{uuid.uuid4().hex[:6]}_*[x]_"  # glob characters are escaped
    await broadcast.startup()
    await log_levels.startup()
    name = unique_logger()
    response = await client.post("/c2c/logging/level", json={"name": name, "level": "ERROR"}, headers=ADMIN)
    assert response.status_code == 200, response.text
    assert [p["status"] for p in response.json()["processes"]] == ["ok"]
    sync = redis.Redis.from_url(redis_server.url)
    try:
        assert sync.get(settings.tools.logging.redis_prefix + name) == b"ERROR"
        # Another process stored an override; this one was removed meanwhile: a restore syncs both.
        other = unique_logger()
        sync.set(settings.tools.logging.redis_prefix + other, "CRITICAL")
        sync.set(f"test_other_prefix_{other}", "DEBUG")
        sync.delete(settings.tools.logging.redis_prefix + name)
        await log_levels.startup()
        assert logging.getLogger(other).level == logging.CRITICAL
        assert logging.getLogger(name).level == logging.NOTSET
        overrides = (await client.get("/c2c/logging/overrides", headers=ADMIN)).json()["overrides"]
        assert overrides == [{"name": other, "level": "CRITICAL"}]
    finally:
        sync.close()


async def test_redis_down_gives_503_and_changes_nothing(
    client: httpx.AsyncClient,
    settings,
    own_redis_server,  # type: ignore[no-untyped-def]
) -> None:
    settings.redis.url = own_redis_server.url
    await broadcast.startup()
    own_redis_server.stop()
    name = unique_logger()
    response = await client.post("/c2c/logging/level", json={"name": name, "level": "DEBUG"}, headers=ADMIN)
    assert response.status_code == 503
    assert "unavailable" in response.json()["detail"]
    assert logging.getLogger(name).level == logging.NOTSET
    assert (await client.get("/c2c/logging/overrides", headers=ADMIN)).status_code == 503


# ---------------------------------------------------------------------------------------------- processes


async def levels_everywhere(name: str) -> list[dict[str, Any]]:
    answers = await broadcast.broadcast("test_level_of", {"name": name}, expect_answers=True, timeout=10)
    assert answers is not None
    return [a.payload if isinstance(a, broadcast.BroadcastResponse) else None for a in answers]


@pytest.mark.slow
async def test_level_set_through_one_worker_is_effective_in_all_and_survives_a_restart(
    settings,
    own_redis_server,  # type: ignore[no-untyped-def]
) -> None:
    settings.redis.url = own_redis_server.url
    settings.broadcast.secret = BROADCAST_SECRET
    name = unique_logger()
    with running_workers(own_redis_server.url) as service:
        await broadcast.startup()
        try:
            assert [a["level"] for a in await levels_everywhere(name)] == ["NOTSET"] * 3
            async with httpx.AsyncClient(base_url=service.url, timeout=20) as http:
                response = await http.post("/c2c/logging/level", json={"name": name, "level": "DEBUG"}, headers=ADMIN)
                assert response.status_code == 200, response.text
                # This test process may listen too (earlier tests subscribed it): count the workers only.
                processes = [p for p in response.json()["processes"] if p["pid"] != os.getpid()]
                assert [p["status"] for p in processes] == ["ok"] * 3
                assert len({p["pid"] for p in processes}) == 3
            assert [a["level"] for a in await levels_everywhere(name)] == ["DEBUG"] * 3

            await asyncio.to_thread(service.stop)
            assert await levels_everywhere(name) == []  # nobody listens any more
            await asyncio.to_thread(service.start, "test_level_of")
            assert [a["level"] for a in await levels_everywhere(name)] == ["DEBUG"] * 3  # restored at start-up

            async with httpx.AsyncClient(base_url=service.url, timeout=20) as http:
                overrides = (await http.get("/c2c/logging/overrides", headers=ADMIN)).json()["overrides"]
                assert {"name": name, "level": "DEBUG"} in overrides
                deleted = await http.delete(f"/c2c/logging/overrides/{name}", headers=ADMIN)
                assert deleted.status_code == 200
            assert [a["level"] for a in await levels_everywhere(name)] == ["NOTSET"] * 3
        finally:
            await broadcast.shutdown()
            await redis_utils.cleanup()


async def test_change_received_by_no_process_is_an_error_not_200(
    client: httpx.AsyncClient,
    settings,
    redis_server,
) -> None:
    settings.redis.url = redis_server.url
    await broadcast.startup()
    await log_levels.startup()
    await broadcast.unsubscribe(log_levels.BROADCAST_CHANNEL)  # nobody listens any more
    name = unique_logger()
    try:
        response = await client.post("/c2c/logging/level", json={"name": name, "level": "ERROR"}, headers=ADMIN)
    finally:
        log_levels._apply_everywhere = None  # subscribed again when next needed
    assert response.status_code == 504, response.text
    body = response.json()
    assert body["processes"] == []
    assert body["stored"] is True
    assert "no process received" in body["detail"]
    sync = redis.Redis.from_url(redis_server.url)
    try:
        assert sync.get(settings.tools.logging.redis_prefix + name) == b"ERROR"  # stored, as the answer says
    finally:
        sync.close()


async def test_change_is_confirmed_by_the_replica_and_refused_on_a_replica(
    client: httpx.AsyncClient,
    settings,
    own_redis_server,  # type: ignore[no-untyped-def]
) -> None:
    replica = RedisServer()
    replica.start()
    master = redis.Redis.from_url(own_redis_server.url)
    replica_client = redis.Redis.from_url(replica.url)
    try:
        replica_client.execute_command("REPLICAOF", "127.0.0.1", str(own_redis_server.port))
        deadline = asyncio.get_running_loop().time() + 20
        while len(master.execute_command("ROLE")[2]) != 1:  # the master lists its replica
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
        await broadcast.shutdown()
        await redis_utils.cleanup()  # clients of another URL may be cached for this loop
        settings.redis.url = own_redis_server.url
        await broadcast.startup()
        name = unique_logger()
        response = await client.post("/c2c/logging/level", json={"name": name, "level": "INFO"}, headers=ADMIN)
        assert response.status_code == 200, response.text
        # WAIT made the answer wait for the replica: it has the value already.
        assert replica_client.get(settings.tools.logging.redis_prefix + name) == b"INFO"
        await broadcast.shutdown()
        await redis_utils.cleanup()

        # Pointed at a replica (a demoted master): it answers ROLE slave, the change is neither stored nor applied.
        settings.redis.url = replica.url
        settings.redis.connect_timeout = timedelta(seconds=0.5)
        settings.redis.socket_timeout = timedelta(seconds=0.5)
        await broadcast.startup()
        other = unique_logger()
        response = await client.post("/c2c/logging/level", json={"name": other, "level": "DEBUG"}, headers=ADMIN)
        assert response.status_code == 503, response.text
        assert "not stored" in response.json()["detail"]
        assert "slave" in response.json()["detail"]
        assert logging.getLogger(other).level == logging.NOTSET
        assert master.get(settings.tools.logging.redis_prefix + other) is None
    finally:
        master.close()
        replica_client.close()
        replica.close()
