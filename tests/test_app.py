"""The /c2c sub-app shell: route_prefix, HEAD wherever GET is served, lifespan start-up and shut-down against a
real Redis."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.routing import Mount, Route

import c2casgiutils
from c2casgiutils import _app, broadcast, config, redis_utils
from tests.admin_fixtures import UvicornService
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


# ------------------------------------------------------------------------------------------------ HEAD

ADMIN_SECRET = "head-test-secret-with-enough-length-0123456789"


def _get_paths(sub_app: FastAPI) -> list[str]:
    """Every GET route of the sub-app (path parameters filled in) and every static file, as mounted at /c2c."""
    prefix = config.settings.route_prefix.rstrip("/")
    paths: set[str] = set()
    for router, path, _ in _app.ROUTERS:
        paths.update(prefix + path + route.path for route in router.routes if "GET" in getattr(route, "methods", ()))
    for route in sub_app.routes:
        if isinstance(route, Mount):
            paths.update(f"{route.path}/{file.name}" for file in _app.STATIC_DIR.iterdir())
        elif isinstance(route, Route) and "GET" in (route.methods or ()):  # the API docs and the OpenAPI document
            paths.add(route.path)
    return sorted("/c2c" + re.sub(r"\{[^}]*\}", "x", path) for path in paths)


def test_every_get_route_answers_head_as_get(settings: Any) -> None:
    settings.auth.secret = ADMIN_SECRET
    sub_app = c2casgiutils.create_app()
    paths = _get_paths(sub_app)
    for expected in ("/c2c/", "/c2c/health_checks", "/c2c/openapi.json", "/c2c/docs", "/c2c/static/c2c.css"):
        assert expected in paths
    with TestClient(_main_app(sub_app), follow_redirects=False) as client:
        for path in paths:
            for admin in (False, True):
                headers = {"X-API-Key": ADMIN_SECRET} if admin else {}
                get = client.get(path, headers=headers)
                head = client.head(path, headers=headers)
                assert head.status_code == get.status_code != 405, (path, admin, get.status_code, head.status_code)
                assert head.headers.get("content-type") == get.headers.get("content-type"), path
                assert head.headers.keys() == get.headers.keys(), path
                assert head.content == b"", path


def _raw_request(port: int, method: str, path: str) -> tuple[bytes, bytes]:
    """The header block and the body of the answer to one request on its own connection (read until closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return head, body


@pytest.fixture(scope="module")
def service() -> Iterator[UvicornService]:
    with UvicornService() as running:
        yield running


@pytest.mark.parametrize("path", ["/c2c/", "/c2c/health_checks", "/c2c/static/c2c.css", "/c2c/openapi.json"])
def test_head_through_uvicorn_has_the_headers_of_get_and_no_body(service: UvicornService, path: str) -> None:
    get_head, get_body = _raw_request(service.port, "GET", path)
    head_head, head_body = _raw_request(service.port, "HEAD", path)
    assert head_head.split(b"\r\n", 1)[0] == get_head.split(b"\r\n", 1)[0] == b"HTTP/1.1 200 OK"
    assert get_body
    assert head_body == b""
    get_fields, head_fields = _fields(get_head), _fields(head_head)
    assert head_fields.keys() == get_fields.keys()
    assert head_fields["content-type"] == get_fields["content-type"]
    if path.endswith((".css", ".json")):  # the same bytes every time
        assert head_fields["content-length"] == get_fields["content-length"] == str(len(get_body)).encode()


def _fields(header_block: bytes) -> dict[str, bytes]:
    fields = {}
    for line in header_block.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        fields[name.decode().lower()] = value.strip()
    return fields
