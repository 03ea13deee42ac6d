"""The /c2c sub-app shell: route_prefix, lifespan start-up and shut-down against a real Redis."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient

import c2casgiutils
from c2casgiutils import broadcast, redis_utils
from tests.servers import RedisServer


def _main_app(sub_app: FastAPI, lifespan: Any = None) -> FastAPI:
    app = FastAPI(lifespan=lifespan)
    app.mount("/c2c", sub_app)
    return app


def test_index_answers_at_the_mount_point() -> None:
    with TestClient(_main_app(c2casgiutils.app)) as client:
        response = client.get("/c2c/")
    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]


@pytest.mark.parametrize("prefix", ["/tools/", "tools", "/tools"])
def test_route_prefix_moves_every_route(settings: Any, prefix: str) -> None:
    settings.route_prefix = type(settings).model_validate({"route_prefix": prefix}).route_prefix
    assert settings.route_prefix == "/tools/"
    with TestClient(_main_app(c2casgiutils.create_app())) as client:
        assert client.get("/c2c/tools/").status_code == 200
        assert client.get("/c2c/tools/health_checks").status_code == 200
        assert client.get("/c2c/tools/static/c2c.css").status_code == 200
        assert client.get("/c2c/tools/openapi.json").status_code == 200
        assert client.get("/c2c/health_checks").status_code == 404


def _connection_count(server: RedisServer) -> int:
    """Connections open on the server, not counting the one that asks."""
    client = redis.Redis.from_url(server.url)
    try:
        return len(client.client_list()) - 1
    finally:
        client.close()


def test_lifespan_opens_and_closes_the_redis_listener(settings: Any, own_redis_server: RedisServer) -> None:
    """startup() subscribes this process to Redis; shutdown() closes the listener and the clients."""
    settings.redis.url = own_redis_server.url
    app = _main_app(c2casgiutils.app, lifespan=c2casgiutils.lifespan)
    assert _connection_count(own_redis_server) == 0
    with TestClient(app) as client:
        assert broadcast.backend_name() == "redis"
        assert broadcast.is_connected()
        assert client.get("/c2c/").status_code == 200
        assert _connection_count(own_redis_server) >= 1

        async def _channels() -> list[bytes]:
            clients = redis_utils.get()
            assert clients is not None
            return list(await clients.master.pubsub_channels())

        assert client.portal.call(_channels)  # type: ignore[union-attr]
    assert broadcast.backend_name() == "local"
    deadline = time.monotonic() + 5  # the server sees the sockets close a moment later
    while _connection_count(own_redis_server) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _connection_count(own_redis_server) == 0
