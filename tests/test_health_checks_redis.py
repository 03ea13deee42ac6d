"""The Redis check against a real redis-server: up, stopped, black-holed, password-protected, shared."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from c2casgiutils import health_checks, redis_utils
from tests.health_fixtures.support import client, fresh_factory
from tests.servers import BlackHole, RedisServer


@pytest.fixture
def factory(monkeypatch: pytest.MonkeyPatch) -> health_checks.Factory:
    return fresh_factory(monkeypatch)


@pytest.fixture
async def redis_settings(settings) -> AsyncIterator[object]:  # type: ignore[no-untyped-def]
    """Settings whose Redis clients are closed after the test (they are cached per event loop)."""
    settings.redis.sentinels = None
    settings.redis.servicename = None
    yield settings
    await redis_utils.cleanup()


async def _run_one(check: health_checks.Check) -> health_checks.EntityResult:
    factory = health_checks.Factory()
    factory.add(check)
    (entity,) = (await factory.run()).entities
    return entity


async def test_redis_up(redis_settings, own_redis_server: RedisServer) -> None:  # type: ignore[no-untyped-def]
    redis_settings.redis.url = own_redis_server.url
    entity = await _run_one(health_checks.Redis(tags=["liveness", "redis", "all"]))
    assert entity.status_code == 200
    assert entity.payload["master"] == "ok"
    assert entity.payload["configured"] is True
    assert entity.payload["redis"] == own_redis_server.url
    assert "replica" not in entity.payload  # without Sentinel the replica is the master


async def test_redis_stopped_then_back(redis_settings, own_redis_server: RedisServer) -> None:  # type: ignore[no-untyped-def]
    redis_settings.redis.url = own_redis_server.url
    check = health_checks.Redis(timeout=10)
    assert (await _run_one(check)).status_code == 200
    own_redis_server.stop()
    down = await _run_one(check)
    assert down.status_code == 500
    assert "ConnectionError" in down.payload["master"]
    assert down.payload["error"].startswith("master: ")
    own_redis_server.start()
    assert (await _run_one(check)).status_code == 200


async def test_redis_black_hole_times_out_within_the_check_timeout(
    redis_settings,
    black_hole: BlackHole,  # type: ignore[no-untyped-def]
) -> None:
    redis_settings.redis.url = f"redis://127.0.0.1:{black_hole.port}/0"
    redis_settings.redis.socket_timeout = timedelta(seconds=60)  # the check's timeout must win
    start = time.monotonic()
    entity = await _run_one(health_checks.Redis(timeout=0.5))
    assert time.monotonic() - start < 0.5 + 2.0
    assert entity.status_code == 500
    assert entity.payload["error"] == "timeout"
    assert black_hole.accepted  # the connection was really made, and never answered


async def test_redis_black_hole_with_a_short_socket_timeout(
    redis_settings,
    black_hole: BlackHole,  # type: ignore[no-untyped-def]
) -> None:
    redis_settings.redis.url = f"redis://127.0.0.1:{black_hole.port}/0"
    redis_settings.redis.socket_timeout = timedelta(seconds=0.3)
    entity = await _run_one(health_checks.Redis(timeout=10))
    assert entity.status_code == 500
    assert "Timeout" in entity.payload["master"]


async def test_redis_password_is_masked(redis_settings) -> None:  # type: ignore[no-untyped-def]
    password = "redis-s3cret-password"
    server = RedisServer(password=password)
    server.start()
    try:
        redis_settings.redis.url = server.url
        good = await _run_one(health_checks.Redis())
        await redis_utils.cleanup()
        redis_settings.redis.url = server.url.replace(password, "wrong-redis-password")
        bad = await _run_one(health_checks.Redis())
    finally:
        server.close()
    assert good.status_code == 200
    assert bad.status_code == 500
    for entity in (good, bad):
        text = json.dumps(entity.payload)
        assert password not in text
        assert "wrong-redis-password" not in text
        assert ":***@" in entity.payload["redis"]


async def test_redis_not_configured(redis_settings) -> None:  # type: ignore[no-untyped-def]
    redis_settings.redis.url = None
    optional = await _run_one(health_checks.Redis())
    assert optional.status_code == 200
    assert optional.payload["configured"] is False
    assert "not configured" in optional.payload["message"]
    required = await _run_one(health_checks.Redis(required=True))
    assert required.status_code == 500
    assert "not configured" in required.payload["error"]


async def _ping_calls(server: RedisServer) -> int:
    import redis.asyncio

    stats = redis.asyncio.Redis(host="127.0.0.1", port=server.port, socket_timeout=5)
    try:
        info = await stats.info("commandstats")
    finally:
        await stats.aclose()
    return int(info.get("cmdstat_ping", {}).get("calls", 0))


async def test_concurrent_probes_share_one_ping(
    redis_settings,
    own_redis_server: RedisServer,
    factory: health_checks.Factory,  # type: ignore[no-untyped-def]
) -> None:
    redis_settings.redis.url = own_redis_server.url
    factory.add(health_checks.Redis(cache_ttl=30))
    async with client() as http:
        responses = await asyncio.gather(*(http.get("/c2c/health_checks") for _ in range(20)))
        assert {r.status_code for r in responses} == {200}
        assert await _ping_calls(own_redis_server) == 1
        uncached = health_checks.Redis(name="uncached")
        factory.add(uncached)
        await asyncio.gather(*(http.get("/c2c/health_checks?name=uncached") for _ in range(5)))
    assert await _ping_calls(own_redis_server) == 1 + 5


async def test_endpoint_with_black_holed_redis_answers_within_the_bound(
    redis_settings,
    black_hole: BlackHole,
    factory: health_checks.Factory,  # type: ignore[no-untyped-def]
) -> None:
    redis_settings.redis.url = f"redis://127.0.0.1:{black_hole.port}/0"
    redis_settings.redis.socket_timeout = timedelta(seconds=60)
    redis_settings.health_checks.timeout = timedelta(seconds=0.5)
    factory.add(health_checks.Redis(tags=["liveness"]))
    factory.add(health_checks.Wrong(tags=["other"]))
    async with client() as http:
        start = time.monotonic()
        response = await http.get("/c2c/health_checks", params={"tags": "liveness"})
        elapsed = time.monotonic() - start
    assert elapsed < 0.5 + 2.0
    assert response.status_code == 500
    (entity,) = response.json()["entities"]
    assert entity["name"] == "Redis"
    assert entity["payload"]["error"] == "timeout"


async def test_settings_redis_py_refuses_are_an_unhealthy_check(redis_settings) -> None:  # type: ignore[no-untyped-def]
    redis_settings.redis.url = "redis://:check-Secret-77@127.0.0.1:1/0"
    redis_settings.redis.options = {"sokcet_timeout": 5}
    entity = await _run_one(health_checks.Redis())
    assert entity.status_code == 500
    assert "C2C__REDIS__OPTIONS" in entity.payload["error"]
    assert "sokcet_timeout" in entity.payload["error"]
    assert "check-Secret-77" not in json.dumps(entity.payload)


async def test_payload_names_the_master_address(redis_settings, own_redis_server: RedisServer) -> None:  # type: ignore[no-untyped-def]
    redis_settings.redis.url = f"redis://127.0.0.1:{own_redis_server.port}"
    entity = await _run_one(health_checks.Redis())
    assert entity.status_code == 200
    assert entity.payload["master_address"] == f"127.0.0.1:{own_redis_server.port}"
    assert "replicas" not in entity.payload
