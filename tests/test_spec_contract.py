"""The specification (shared/seeds/003) read line by line, as a user of the package would check it.

Only the public API is used (``import c2casgiutils``, ``from c2casgiutils import ...``). Each test names the
part of the specification it checks. Where the specification contradicts itself or an issue overrides it, the
test checks the package's documented behaviour and says why in a comment.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import uuid
from argparse import ArgumentParser
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
import yaml
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.testclient import TestClient
from pydantic import BaseModel
from starlette.middleware.gzip import GZipMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware

import c2casgiutils
from c2casgiutils import broadcast, cli, config, headers, health_checks
from c2casgiutils.broadcast import MissingAnswer
from c2casgiutils.broadcast import types as broadcast_types
from c2casgiutils.health_checks import Check, Result
from tests.fake_sentry import FakeSentry
from tests.servers import PostgresServer, RedisServer, free_port
from tests.settings_tables import FROM_ENVIRONMENT, SPEC_DEFAULTS

_LOGGER = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS_INI = ROOT / "tests" / "health_fixtures" / "linear.ini"  # two revisions: 0001, 0002 (head)


# --------------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No C2C__ (nor SENTRY_DSN) variable from the calling shell: the defaults are the specification's."""
    for name in list(os.environ):
        if name.upper().startswith("C2C__") or name == "SENTRY_DSN":
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture
def env_settings(clean_env: pytest.MonkeyPatch) -> Any:
    """Set variables with ``clean_env.setenv`` then call the returned function to load them as config.settings."""

    def load() -> config.Settings:
        loaded = config.Settings()
        clean_env.setattr(config, "settings", loaded)
        return loaded

    return load


@pytest.fixture
def factory(monkeypatch: pytest.MonkeyPatch) -> health_checks.Factory:
    """An empty FACTORY for the test (the endpoint reads ``health_checks.FACTORY`` at call time)."""
    fresh = health_checks.Factory()
    monkeypatch.setattr(health_checks, "FACTORY", fresh)
    return fresh


@pytest.fixture
async def package_cleanup(settings: Any) -> AsyncIterator[Any]:
    """Leave no broadcast listener or Redis connection behind."""
    settings.redis.url = None
    settings.broadcast.secret = None
    await c2casgiutils.shutdown()
    yield settings
    await c2casgiutils.shutdown()


def _c2c_client(app: FastAPI, host: str = "testserver") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{host}", timeout=30)


def _app_with_c2c() -> FastAPI:
    app = FastAPI()
    app.mount("/c2c", c2casgiutils.app)
    return app


def _metrics_text(port: int) -> str:
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    response.raise_for_status()
    return response.text


# --------------------------------------------------------------------------------------------------
# "Add in your application" (verbatim) + "Prometheus"
# --------------------------------------------------------------------------------------------------


def _build_spec_application() -> FastAPI:
    """The specification's 'Add in your application' block, verbatim (plus two routes to call)."""
    from prometheus_client import start_http_server  # noqa: PLC0415
    from prometheus_fastapi_instrumentator import Instrumentator  # noqa: PLC0415

    @asynccontextmanager
    async def _lifespan(main_app: FastAPI) -> AsyncIterator[None]:
        """Handle application lifespan events."""
        _LOGGER.info("Starting the application")
        await c2casgiutils.startup(main_app)
        yield

    app = FastAPI(title="My fastapi_app application", lifespan=_lifespan)
    app.mount("/c2c", c2casgiutils.app)

    # For security headers (and compression)
    # Add TrustedHostMiddleware (should be first)
    app.add_middleware(
        TrustedHostMiddleware,
        allowed_hosts=["*"],  # Configure with specific hosts in production
    )
    # Add GZipMiddleware
    app.add_middleware(GZipMiddleware, minimum_size=1000)
    # Set all CORS origins enabled
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"],
        allow_credentials=True,
        allow_methods=["*"],
        allow_headers=["*"],
    )
    app.add_middleware(
        headers.ArmorHeaderMiddleware,
        headers_config={
            "http": {"headers": {"Strict-Transport-Security": None} if not config.settings.http else {}},
        },
    )
    # Optional: trust host/port from forwarded proxy headers
    if config.settings.proxy_headers.type != "none":
        app.add_middleware(
            headers.ForwardedHeadersMiddleware,
            trusted_hosts=config.settings.proxy_headers.trusted_hosts,
            headers_type=config.settings.proxy_headers.type,
        )
    # Get Prometheus HTTP server port from environment variable 9000 by default
    server, _ = start_http_server(config.settings.prometheus.port)  # type: ignore[arg-type]  # int | None
    app.state.prometheus_server = server  # (test addition) to stop it afterwards
    instrumentator = Instrumentator(should_instrument_requests_inprogress=True)
    instrumentator.instrument(app)

    @app.get("/url")
    async def url(request: Request) -> dict[str, Any]:
        return {"url": str(request.url), "client": request.client.host if request.client else None}

    @app.get("/big")
    async def big() -> PlainTextResponse:
        return PlainTextResponse("x" * 5000)

    return app


@pytest.fixture
def spec_application(env_settings: Any, clean_env: pytest.MonkeyPatch, package_cleanup: Any) -> Iterator[Any]:
    """Build the verbatim application after the test has set its C2C__ variables; stop its metrics server."""
    built: list[FastAPI] = []

    def build(**variables: str) -> FastAPI:
        for name, value in variables.items():
            clean_env.setenv(name, value)
        def on_a_free_port() -> FastAPI:
            clean_env.setenv("C2C__PROMETHEUS__PORT", str(free_port()))
            env_settings()
            app = _build_spec_application()
            built.append(app)
            return app

        # free_port() found the port free a moment ago, on 127.0.0.1; the example binds it on every address, and
        # meanwhile another socket of the suite (a client's ephemeral port) may take it: then it runs again.
        for _ in range(4):
            try:
                return on_a_free_port()
            except OSError as error:
                if error.errno != errno.EADDRINUSE:
                    raise
        return on_a_free_port()

    from prometheus_client import REGISTRY  # noqa: PLC0415

    # The instrumentator registers its http_* metrics once per process registry: the collectors registered
    # while the example runs are noted, and dropped afterwards so that the next verbatim example can register
    # them again.
    registered: list[Any] = []
    register = REGISTRY.register

    def noting_register(collector: Any) -> None:
        register(collector)
        registered.append(collector)

    clean_env.setattr(REGISTRY, "register", noting_register)
    yield build
    for app in built:
        app.state.prometheus_server.shutdown()
        app.state.prometheus_server.server_close()
    for collector in registered:
        REGISTRY.unregister(collector)
    # The health checks' collectors are made once per process and prefix: when the example's run made them, they
    # were just dropped with the rest, so they are made again at the next check (else later tests of this file
    # read a gauge no registry exposes).
    from c2casgiutils._health import metrics as health_metrics  # noqa: PLC0415

    for prefix, collectors in list(health_metrics._BY_PREFIX.items()):
        if collectors is not None and any(collector in registered for collector in collectors):
            del health_metrics._BY_PREFIX[prefix]


def test_application_example_serves_c2c_headers_cors_gzip_and_metrics(spec_application: Any) -> None:
    app = spec_application()
    port = config.settings.prometheus.port
    assert port is not None
    with TestClient(app) as client:
        health = client.get("/c2c/health_checks")
        assert health.status_code == 200
        assert health.json()["status_code"] == 200

        response = client.get("/url", headers={"Origin": "https://other.example"})
        assert response.status_code == 200
        # CORSMiddleware: all origins, with credentials (so the origin is echoed).
        assert response.headers["access-control-allow-origin"] == "https://other.example"
        assert response.headers["access-control-allow-credentials"] == "true"
        # ArmorHeaderMiddleware defaults.
        assert response.headers["x-frame-options"] == "DENY"
        # A JSON answer: the policy for non-HTML responses.
        assert response.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
        assert response.headers["x-content-type-options"] == "nosniff"
        # No forwarded middleware (C2C__PROXY_HEADERS__TYPE defaults to none): the URL is the direct one.
        assert response.json()["url"] == "http://testserver/url"

        big = client.get("/big", headers={"Accept-Encoding": "gzip"})
        assert big.headers["content-encoding"] == "gzip"
        assert big.text == "x" * 5000

    # The Prometheus server on C2C__PROMETHEUS__PORT with the instrumentator's metrics of the requests above.
    metrics = _metrics_text(port)
    assert 'handler="/url"' in metrics
    assert "http_requests_inprogress" in metrics


def test_application_example_removes_hsts_exactly_as_its_http_rule_says(spec_application: Any) -> None:
    """The example's "http" rule removes HSTS when ``not config.settings.http``.

    The specification is self-contradictory here (its prose says C2C__HTTP is the development mode, yet the
    rule removes HSTS when C2C__HTTP is false); the package applies the rule as written, and in HTTP mode it
    removes HSTS by itself (issue 4). So with the verbatim example no response carries HSTS.
    """
    app = spec_application()
    assert config.settings.http is False
    with TestClient(app, base_url="https://service.example") as client:
        assert "strict-transport-security" not in client.get("/url").headers


def test_application_example_with_c2c_http_true_sends_no_hsts(spec_application: Any) -> None:
    app = spec_application(C2C__HTTP="true")
    assert config.settings.http is True
    with TestClient(app, base_url="https://service.example") as client:
        response = client.get("/url")
    assert "strict-transport-security" not in response.headers
    assert response.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize(
    ("headers_type", "request_headers"),
    [
        ("forwarded", {"Forwarded": "for=203.0.113.7;host=public.example;proto=https"}),
        (
            "x-forwarded",
            {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Host": "public.example", "X-Forwarded-Proto": "https"},
        ),
    ],
)
def test_application_example_trusts_proxy_headers_when_type_is_set(
    spec_application: Any, headers_type: str, request_headers: dict[str, str]
) -> None:
    # TestClient's peer is "testclient" (not an IP): "*" is the documented way to trust any proxy.
    app = spec_application(C2C__PROXY_HEADERS__TYPE=headers_type, C2C__PROXY_HEADERS__TRUSTED_HOSTS="*")
    with TestClient(app) as client:
        body = client.get("/url", headers=request_headers).json()
    assert body == {"url": "https://public.example/url", "client": "203.0.113.7"}


def test_application_example_ignores_proxy_headers_of_an_untrusted_peer(spec_application: Any) -> None:
    app = spec_application(C2C__PROXY_HEADERS__TYPE="forwarded", C2C__PROXY_HEADERS__TRUSTED_HOSTS="10.0.0.0/8")
    with TestClient(app) as client:
        body = client.get("/url", headers={"Forwarded": "host=public.example;proto=https"}).json()
    assert body["url"] == "http://testserver/url"


def test_prometheus_port_setting_defaults_to_9000(clean_env: pytest.MonkeyPatch) -> None:
    assert config.Settings().prometheus.port == 9000
    clean_env.setenv("C2C__PROMETHEUS__PORT", "9123")
    assert config.Settings().prometheus.port == 9123


# --------------------------------------------------------------------------------------------------
# Broadcasting (verbatim example)
# --------------------------------------------------------------------------------------------------


class EchoResponse(BaseModel):
    """Response from broadcast endpoint."""

    result: list[dict[str, Any]] | None = None


class EchoHandlerProto(Protocol):
    async def __call__(
        self, *, message: str
    ) -> list[broadcast_types.BroadcastResponse[EchoResponse] | MissingAnswer] | None: ...


# Late assignment
echo_handler: EchoHandlerProto = None  # type: ignore[assignment]


# Create a handler that will receive broadcasts
async def _echo_handler(*, message: str) -> EchoResponse:
    """Echo handler for broadcast messages."""
    # Verbatim: EchoResponse has no "message" field, so pydantic ignores it and the answer is EchoResponse().
    return EchoResponse(message="Broadcast echo: " + message)


def _broadcast_application() -> FastAPI:
    # Subscribe the handler to a channel on module import
    @asynccontextmanager
    async def _lifespan(main_app: FastAPI) -> AsyncIterator[None]:
        """Handle application lifespan events."""
        _LOGGER.info("Starting the application")
        await c2casgiutils.startup(main_app)
        # Register the echo handler
        global echo_handler  # noqa: PLW0603 - the specification's late assignment
        echo_handler = await broadcast.decorate(_echo_handler, expect_answers=True)
        yield

    app = FastAPI(lifespan=_lifespan)
    app.mount("/c2c", c2casgiutils.app)

    @app.get("/echo")
    async def echo() -> list[dict[str, Any]]:
        answers = await echo_handler(message="hello")
        assert answers is not None
        return [
            {"type": type(answer).__name__, "payload_type": type(getattr(answer, "payload", None)).__name__}
            | answer.model_dump(mode="json")
            for answer in answers
        ]

    return app


@pytest.mark.parametrize("with_redis", [False, True], ids=["local", "redis"])
def test_broadcast_example_answers_with_hostname_pid_and_payload(
    package_cleanup: Any, redis_server: RedisServer, with_redis: bool
) -> None:
    if with_redis:
        package_cleanup.redis.url = redis_server.url
    with TestClient(_broadcast_application()) as client:
        answers = client.get("/echo").json()
    # One process here (TestClient): one BroadcastResponse, rebuilt as the handler's return type.
    assert answers == [
        {
            "type": "BroadcastResponse[EchoResponse]",
            "payload_type": "EchoResponse",
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "payload": {"result": None},
        }
    ]
    assert broadcast.backend_name() == ("redis" if with_redis else "local")


def test_broadcast_missing_answer_is_public() -> None:
    assert broadcast.MissingAnswer is MissingAnswer is broadcast_types.MissingAnswer
    assert issubclass(broadcast_types.BroadcastResponse, BaseModel)


# --------------------------------------------------------------------------------------------------
# health_checks
# --------------------------------------------------------------------------------------------------


class MyCustomCheck(Check):
    """The specification's custom check (with a switch to make it fail)."""

    fail = False

    async def check(self) -> Result:
        try:
            if self.fail:
                raise RuntimeError("broken on purpose")
            return Result(status_code=200, payload={"message": "Everything is fine!"})
        except Exception as e:  # noqa: BLE001 - the specification's example
            return Result(status_code=500, payload={"error": str(e)})


@pytest.fixture
async def postgres_migrated(postgres_server: PostgresServer) -> AsyncIterator[tuple[Any, Any]]:
    """A fresh PostgreSQL database at the first migration only, with an async_sessionmaker and an upgrade."""
    import alembic.command  # noqa: PLC0415
    import alembic.config  # noqa: PLC0415
    import sqlalchemy  # noqa: PLC0415
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine  # noqa: PLC0415

    name = f"spec_{uuid.uuid4().hex[:12]}"
    postgres_server.psql(f"CREATE DATABASE {name}", database="postgres")
    sync_engine = sqlalchemy.create_engine(postgres_server.url("postgresql+psycopg", database=name))
    async_engine = create_async_engine(postgres_server.url(database=name))

    def upgrade(target: str) -> None:
        alembic_config = alembic.config.Config(str(MIGRATIONS_INI))
        with sync_engine.begin() as connection:
            alembic_config.attributes["connection"] = connection
            alembic.command.upgrade(alembic_config, target)

    upgrade("0001")
    yield async_sessionmaker(async_engine), upgrade
    sync_engine.dispose()
    await async_engine.dispose()
    postgres_server.psql(f"DROP DATABASE {name}", database="postgres")


async def test_health_checks_usage_redis_sqlalchemy_alembic_custom(
    factory: health_checks.Factory,
    package_cleanup: Any,
    redis_server: RedisServer,
    postgres_migrated: tuple[Any, Any],
) -> None:
    your_async_sessionmaker, upgrade = postgres_migrated
    package_cleanup.redis.url = redis_server.url
    # The specification's initialisation, as written.
    health_checks.FACTORY.add(health_checks.Redis(tags=["liveness", "redis", "all"]))
    health_checks.FACTORY.add(health_checks.SQLAlchemy(Session=your_async_sessionmaker, tags=["database", "all"]))
    health_checks.FACTORY.add(
        health_checks.Alembic(
            Session=your_async_sessionmaker, config_file=str(MIGRATIONS_INI), tags=["migrations", "database", "all"]
        )
    )
    health_checks.FACTORY.add(MyCustomCheck(tags=["custom", "all"]))

    async with _c2c_client(_app_with_c2c()) as client:
        behind = await client.get("/c2c/health_checks")
        upgrade("head")
        at_head = await client.get("/c2c/health_checks")

    # Alembic: "Ensures the database schema is up-to-date with the latest migrations".
    assert behind.status_code == 500
    by_name = {entity["name"]: entity for entity in behind.json()["entities"]}
    assert by_name["Alembic"]["status_code"] == 500
    assert {name: entity["status_code"] for name, entity in by_name.items() if name != "Alembic"} == {
        "Redis": 200,
        "SQLAlchemy": 200,
        "MyCustomCheck": 200,
    }

    # The JSON shape: status_code, time_taken, entities[name, tags, status_code, payload, time_taken].
    assert at_head.status_code == 200
    body = at_head.json()
    assert set(body) == {"status_code", "time_taken", "entities"}
    assert body["status_code"] == 200
    assert isinstance(body["time_taken"], float)
    assert [entity["name"] for entity in body["entities"]] == ["Redis", "SQLAlchemy", "Alembic", "MyCustomCheck"]
    for entity in body["entities"]:
        assert set(entity) == {"name", "tags", "status_code", "payload", "time_taken"}
        assert entity["status_code"] == 200
        assert isinstance(entity["payload"], dict)
        assert isinstance(entity["time_taken"], float)
    assert body["entities"][0]["tags"] == ["liveness", "redis", "all"]
    assert body["entities"][2]["tags"] == ["migrations", "database", "all"]
    assert body["entities"][3]["payload"] == {"message": "Everything is fine!"}


async def test_health_checks_redis_down_is_500(
    factory: health_checks.Factory, package_cleanup: Any, own_redis_server: RedisServer
) -> None:
    package_cleanup.redis.url = own_redis_server.url
    health_checks.FACTORY.add(health_checks.Redis(tags=["liveness", "redis", "all"]))
    async with _c2c_client(_app_with_c2c()) as client:
        assert (await client.get("/c2c/health_checks")).status_code == 200
        own_redis_server.stop()
        down = await client.get("/c2c/health_checks")
    assert down.status_code == 500
    assert down.json()["entities"][0]["status_code"] == 500


async def test_custom_check_failure_gives_500_with_its_payload(factory: health_checks.Factory) -> None:
    failing = MyCustomCheck(tags=["custom", "all"])
    failing.fail = True
    health_checks.FACTORY.add(failing)
    async with _c2c_client(_app_with_c2c()) as client:
        response = await client.get("/c2c/health_checks")
    assert response.status_code == 500
    assert response.json()["status_code"] == 500
    assert response.json()["entities"][0]["payload"] == {"error": "broken on purpose"}


def _tagged(name: str, tags: list[str]) -> MyCustomCheck:
    return MyCustomCheck(tags=tags, name=name)


async def test_health_checks_tags_filter_is_any_of(factory: health_checks.Factory) -> None:
    for name, tags in [
        ("db", ["database"]),
        ("crit", ["critical"]),
        ("both", ["database", "critical"]),
        ("other", ["liveness"]),
    ]:
        health_checks.FACTORY.add(_tagged(name, tags))
    async with _c2c_client(_app_with_c2c()) as client:
        selected = (await client.get("/c2c/health_checks?tags=database,critical")).json()
        only_db = (await client.get("/c2c/health_checks", params={"tags": "database"})).json()
        everything = (await client.get("/c2c/health_checks")).json()
    assert [entity["name"] for entity in selected["entities"]] == ["db", "crit", "both"]
    assert [entity["name"] for entity in only_db["entities"]] == ["db", "both"]
    assert [entity["name"] for entity in everything["entities"]] == ["db", "crit", "both", "other"]


async def test_health_checks_name_filter(factory: health_checks.Factory, package_cleanup: Any) -> None:
    health_checks.FACTORY.add(health_checks.Redis(tags=["liveness", "redis", "all"]))
    health_checks.FACTORY.add(MyCustomCheck(tags=["custom", "all"]))
    async with _c2c_client(_app_with_c2c()) as client:
        custom = (await client.get("/c2c/health_checks?name=MyCustomCheck")).json()
        redis_only = await client.get("/c2c/health_checks?name=Redis")
    assert [entity["name"] for entity in custom["entities"]] == ["MyCustomCheck"]
    # ?name=Redis runs only the Redis check (no C2C__REDIS__URL here: single-process mode, not a failure).
    assert [entity["name"] for entity in redis_only.json()["entities"]] == ["Redis"]
    assert redis_only.status_code == 200


async def test_health_checks_failure_gauge_in_prometheus_output(
    factory: health_checks.Factory, clean_env: pytest.MonkeyPatch
) -> None:
    from prometheus_client import start_http_server  # noqa: PLC0415

    healthy = _tagged("spec_gauge_ok", ["all"])
    broken = _tagged("spec_gauge_broken", ["all"])
    broken.fail = True
    health_checks.FACTORY.add(healthy)
    health_checks.FACTORY.add(broken)
    async with _c2c_client(_app_with_c2c()) as client:
        await client.get("/c2c/health_checks")
    port = free_port()
    server, _ = start_http_server(port, addr="127.0.0.1")
    try:
        metrics = await asyncio.to_thread(_metrics_text, port)
    finally:
        server.shutdown()
        server.server_close()
    prefix = config.settings.prometheus.prefix
    assert prefix == "c2casgiutils_"
    lines = set(metrics.splitlines())
    assert f'{prefix}health_checks_failure{{name="spec_gauge_broken"}} 1.0' in lines
    assert f'{prefix}health_checks_failure{{name="spec_gauge_ok"}} 0.0' in lines


# --------------------------------------------------------------------------------------------------
# ArmorHeaderMiddleware
# --------------------------------------------------------------------------------------------------


def _armored(
    headers_config: dict[str, Any] | None = None, *, status: int = 200, app_headers: dict[str, str] | None = None
) -> FastAPI:
    app = FastAPI()

    @app.api_route("/{path:path}", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])
    async def anything(path: str) -> PlainTextResponse:
        return PlainTextResponse(path, status_code=status, headers=app_headers)

    if headers_config is None:
        # Use default security headers
        app.add_middleware(headers.ArmorHeaderMiddleware)
    else:
        app.add_middleware(headers.ArmorHeaderMiddleware, headers_config=headers_config)
    return app


def _get(app: FastAPI, path: str = "/", host: str = "service.example", method: str = "GET") -> Any:
    with TestClient(app, base_url=f"https://{host}") as client:
        return client.request(method, path).headers


def test_armor_import_path_of_the_specification() -> None:
    from c2casgiutils.headers import ArmorHeaderMiddleware  # noqa: PLC0415

    assert ArmorHeaderMiddleware is headers.ArmorHeaderMiddleware


def test_armor_defaults(settings: Any) -> None:
    settings.http = False
    received = _get(_armored())
    assert received["content-security-policy"].startswith("default-src 'none'")
    assert received["x-frame-options"] == "DENY"
    assert received["strict-transport-security"].startswith("max-age=")
    assert received["x-content-type-options"] == "nosniff"
    assert received["referrer-policy"]
    assert "geolocation=()" in received["permissions-policy"]
    assert received["x-dns-prefetch-control"] == "off"
    assert received["origin-agent-cluster"] == "?1"
    assert received["cross-origin-resource-policy"]
    assert received["cross-origin-opener-policy"]
    assert received["cross-origin-embedder-policy"]
    # Expect-CT is listed by the specification but left out on purpose: browsers dropped it (issue 4).
    assert "expect-ct" not in received


@pytest.mark.parametrize("host", ["localhost", "localhost:8080", "127.0.0.1:8000"])
def test_armor_no_hsts_for_localhost(settings: Any, host: str) -> None:
    settings.http = False
    received = _get(_armored(), host=host)
    assert "strict-transport-security" not in received
    assert received["x-frame-options"] == "DENY"


def test_armor_no_hsts_in_http_mode(settings: Any) -> None:
    settings.http = True
    assert "strict-transport-security" not in _get(_armored())


SPEC_HEADERS_CONFIG: dict[str, Any] = {
    "api_endpoints": {
        "path_match": r"^/api/.*",  # Regex pattern for paths
        "headers": {"Access-Control-Allow-Origin": "*", "X-Custom-Header": "api-value"},
        "order": 1,  # Processing order
    },
    "admin_section": {
        "netloc_match": r"^admin\..*",  # Regex for host matching
        "path_match": r"^/admin/.*",
        "headers": {"X-Robots-Tag": "noindex, nofollow"},
        "status_code": 200,  # Only apply for specific status code
        "order": 2,
    },
    "success_responses": {
        "headers": {"Cache-Control": ["public", "max-age=3600"]},
        "status_code": (200, 299),  # Apply for a range of status codes (200-299)
        "order": 3,
    },
    "api_methods": {
        "path_match": r"^/api/.*",
        "methods": ["GET", "HEAD"],  # Only apply for specific HTTP methods
        "headers": {"Cache-Control": ["public", "max-age=3600"]},
        "order": 4,
    },
    "remove_header": {
        "headers": {
            "Server": None  # Remove header by setting to None
        }
    },
}


def test_armor_path_match() -> None:
    app = _armored(SPEC_HEADERS_CONFIG)
    api = _get(app, "/api/items")
    assert api["access-control-allow-origin"] == "*"
    assert api["x-custom-header"] == "api-value"
    assert "x-custom-header" not in _get(app, "/other")


def test_armor_netloc_match() -> None:
    app = _armored(SPEC_HEADERS_CONFIG)
    assert _get(app, "/admin/users", host="admin.example.com")["x-robots-tag"] == "noindex, nofollow"
    assert "x-robots-tag" not in _get(app, "/admin/users", host="www.example.com")
    assert "x-robots-tag" not in _get(app, "/public", host="admin.example.com")


def test_armor_netloc_match_sees_host_and_port() -> None:
    """The netloc is "host:port" when the request names a port."""
    app = _armored({"admin_port": {"netloc_match": r"^admin\.example\.com:8443$", "headers": {"X-Port": "8443"}}})
    assert _get(app, host="admin.example.com:8443")["x-port"] == "8443"
    assert "x-port" not in _get(app, host="admin.example.com")


def test_armor_single_status_code() -> None:
    assert "x-robots-tag" not in _get(_armored(SPEC_HEADERS_CONFIG, status=201), "/admin/x", host="admin.example.com")
    assert "x-robots-tag" in _get(_armored(SPEC_HEADERS_CONFIG, status=200), "/admin/x", host="admin.example.com")


@pytest.mark.parametrize(("status", "cached"), [(200, True), (204, True), (299, True), (301, False), (404, False)])
def test_armor_status_code_range(status: int, cached: bool) -> None:
    received = _get(_armored(SPEC_HEADERS_CONFIG, status=status), "/page")
    assert (received.get("cache-control") == "public; max-age=3600") is cached


def test_armor_methods() -> None:
    config_ = {
        "api_post_endpoints": {
            "path_match": r"^/api/.*",
            "methods": ["POST", "PUT", "PATCH"],  # Only apply for these methods
            "headers": {"Cache-Control": "no-store"},
        },
        "api_get_endpoints": {
            "path_match": r"^/api/.*",
            "methods": ["GET", "HEAD"],  # Only apply for GET and HEAD requests
            "headers": {"Cache-Control": ["public", "max-age=3600"]},
        },
    }
    app = _armored(config_)
    for method in ("GET", "HEAD"):
        assert _get(app, "/api/x", method=method)["cache-control"] == "public; max-age=3600"
    for method in ("POST", "PUT", "PATCH"):
        assert _get(app, "/api/x", method=method)["cache-control"] == "no-store"
    assert "cache-control" not in _get(app, "/api/x", method="DELETE")


def test_armor_order_later_entry_wins() -> None:
    # Entries apply in ascending "order": the higher order is applied last and its value stays.
    app = _armored(
        {
            "first": {"headers": {"X-Which": "first"}, "order": 2},
            "second": {"headers": {"X-Which": "second"}, "order": 1},
        }
    )
    assert _get(app)["x-which"] == "first"


def test_armor_none_removes_application_header() -> None:
    app = _armored(SPEC_HEADERS_CONFIG, app_headers={"Server": "leaky/1.0", "X-Kept": "yes"})
    received = _get(app, "/page")
    assert "server" not in received
    assert received["x-kept"] == "yes"


def test_armor_value_types_short_form() -> None:
    """The "multiple value types" block: header names straight as keys of headers_config."""
    headers_config = {
        # String value
        "X-Custom": "value",
        # List (joined with "; ")
        "Cache-Control": ["no-cache", "no-store", "must-revalidate"],
        # Dictionary (for complex headers like CSP)
        "Content-Security-Policy": {
            "default-src": ["'self'"],
            "script-src": ["'self'", "https://cdn.example.com"],
            "style-src": ["'self'", "'unsafe-inline'"],
        },
        # List (joined with ", ") for Permissions-Policy
        "Permissions-Policy": ["geolocation=()", "microphone=()"],
        # Remove header
        "Unwanted-Header": None,
    }
    received = _get(_armored(headers_config, app_headers={"Unwanted-Header": "x"}))
    assert received["x-custom"] == "value"
    assert received["cache-control"] == "no-cache; no-store; must-revalidate"
    assert received["content-security-policy"] == (
        "default-src 'self'; script-src 'self' https://cdn.example.com; style-src 'self' 'unsafe-inline'"
    )
    assert received["permissions-policy"] == "geolocation=(), microphone=()"
    assert "unwanted-header" not in received


def test_armor_value_types_inside_headers() -> None:
    app = _armored(
        {
            "all": {
                "headers": {
                    "X-Custom": "value",
                    "Cache-Control": ["no-cache", "no-store"],
                    "Content-Security-Policy": {"default-src": ["'self'"], "img-src": "data:"},
                    "Permissions-Policy": ["geolocation=()", "camera=()"],
                }
            }
        }
    )
    received = _get(app)
    assert received["x-custom"] == "value"
    assert received["cache-control"] == "no-cache; no-store"
    assert received["content-security-policy"] == "default-src 'self'; img-src data:"
    assert received["permissions-policy"] == "geolocation=(), camera=()"


def test_armor_csp_nonce_matches_request_state() -> None:
    custom_config: dict[str, Any] = {
        "my_page": {
            "path_match": r"^/my-page/?",
            "headers": {
                "Content-Security-Policy": {
                    "default-src": ["'self'"],
                    "script-src": ["'self'", headers.CSP_NONCE],
                    "style-src": ["'self'", headers.CSP_NONCE],
                }
            },
        }
    }
    app = FastAPI()

    @app.get("/my-page")
    async def page(request: Request) -> JSONResponse:
        return JSONResponse({"nonce": getattr(request.state, "nonce", "")})

    app.add_middleware(headers.ArmorHeaderMiddleware, headers_config=custom_config)
    with TestClient(app) as client:
        first = client.get("/my-page")
        second = client.get("/my-page")
    nonces = [response.json()["nonce"] for response in (first, second)]
    assert all(nonces)
    assert nonces[0] != nonces[1]
    for response, nonce in zip((first, second), nonces, strict=True):
        assert response.headers["content-security-policy"] == (
            f"default-src 'self'; script-src 'self' 'nonce-{nonce}'; style-src 'self' 'nonce-{nonce}'"
        )


def test_armor_csp_nonce_in_jinja2_template(tmp_path: Path) -> None:
    pytest.importorskip("jinja2")
    from fastapi.templating import Jinja2Templates  # noqa: PLC0415

    (tmp_path / "index.html.jinja2").write_text(
        '<script nonce="{{ nonce }}">\n...\n</script>\n<style nonce="{{ nonce }}">\n...\n</style>\n',
        encoding="utf-8",
    )
    # Configure templates
    templates = Jinja2Templates(directory=str(tmp_path))
    app = FastAPI()

    @app.get("/my-page", response_class=HTMLResponse)
    async def page(request: Request) -> Any:
        # Starlette 1.x takes the request first; the specification's TemplateResponse(name, {"request": ...})
        # is the pre-1.0 signature. The context is the specification's.
        return templates.TemplateResponse(
            request,
            "index.html.jinja2",
            {
                "request": request,
                "nonce": getattr(request.state, "nonce", ""),
            },
        )

    app.add_middleware(
        headers.ArmorHeaderMiddleware,
        headers_config={
            "my_page": {
                "path_match": r"^/my-page/?",
                "headers": {
                    "Content-Security-Policy": {
                        "default-src": ["'self'"],
                        "script-src": ["'self'", headers.CSP_NONCE],
                        "style-src": ["'self'", headers.CSP_NONCE],
                    }
                },
            }
        },
    )
    with TestClient(app) as client:
        response = client.get("/my-page")
    csp = response.headers["content-security-policy"]
    nonce = csp.split("'nonce-", 1)[1].split("'", 1)[0]
    assert len(nonce) >= 16
    assert f'<script nonce="{nonce}">' in response.text
    assert f'<style nonce="{nonce}">' in response.text


def test_armor_page_specific_csp_leaves_other_pages_on_the_default() -> None:
    app = _armored(
        {
            "my_page": {
                "path_match": r"^/your-path/?",
                "headers": {
                    "Content-Security-Policy": {
                        "default-src": ["'self'"],
                        "script-src-elem": ["'self'", "https://cdn.example.com"],
                        "style-src-elem": ["'self'", "https://cdn.example.com"],
                    }
                },
                "order": 1,
            }
        }
    )
    assert "script-src-elem 'self' https://cdn.example.com" in _get(app, "/your-path")["content-security-policy"]
    assert "script-src-elem" not in _get(app, "/elsewhere")["content-security-policy"]


def test_armor_sets_no_cache_control_by_default() -> None:
    assert "cache-control" not in _get(_armored())
    assert "cache-control" not in _get(_armored({"api_endpoints": {"path_match": r"^/api/.*", "headers": {}}}))


def test_armor_cache_control_configured_as_documented() -> None:
    app = _armored(
        {
            "api_endpoints": {
                "path_match": r"^/api/.*",
                "headers": {"Cache-Control": ["public", "max-age=3600"]},  # Cache for 1 hour
                "order": 1,
            }
        }
    )
    assert _get(app, "/api/x")["cache-control"] == "public; max-age=3600"
    assert "cache-control" not in _get(app, "/x")


# --------------------------------------------------------------------------------------------------
# Forwarded headers (direct use of the middleware)
# --------------------------------------------------------------------------------------------------


def _forwarded_app(**kwargs: Any) -> FastAPI:
    app = FastAPI()

    @app.get("/where")
    async def where(request: Request) -> dict[str, Any]:
        return {"url": str(request.url), "client": request.client.host if request.client else None}

    app.add_middleware(headers.ForwardedHeadersMiddleware, **kwargs)
    return app


async def _where(app: FastAPI, peer: str, request_headers: dict[str, str]) -> dict[str, Any]:
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://backend:8080", timeout=10) as client:
        response = await client.get("/where", headers=request_headers)
    result: dict[str, Any] = response.json()
    return result


@pytest.mark.parametrize(
    "trusted_hosts", [["10.0.0.1"], "10.0.0.1", "127.0.0.1,10.0.0.1", "10.0.0.0/8", "*", ["127.0.0.1", "10.0.0.0/8"]]
)
async def test_forwarded_trusted_hosts_forms(trusted_hosts: Any) -> None:
    app = _forwarded_app(trusted_hosts=trusted_hosts, headers_type="forwarded")
    body = await _where(app, "10.0.0.1", {"Forwarded": 'for="198.51.100.1";host=public.example;proto=https'})
    assert body == {"url": "https://public.example/where", "client": "198.51.100.1"}


async def test_forwarded_untrusted_peer_is_ignored() -> None:
    app = _forwarded_app(trusted_hosts="127.0.0.1", headers_type="x-forwarded")
    body = await _where(app, "192.0.2.9", {"X-Forwarded-Host": "public.example", "X-Forwarded-Proto": "https"})
    assert body == {"url": "http://backend:8080/where", "client": "192.0.2.9"}


async def test_forwarded_type_selects_the_header_family() -> None:
    x_forwarded = {"X-Forwarded-Host": "x.example", "X-Forwarded-Proto": "https"}
    rfc = {"Forwarded": "host=rfc.example;proto=https"}
    both = {**x_forwarded, **rfc}
    x_app = _forwarded_app(trusted_hosts="*", headers_type="x-forwarded")
    rfc_app = _forwarded_app(trusted_hosts="*", headers_type="forwarded")
    assert (await _where(x_app, "10.0.0.1", both))["url"] == "https://x.example/where"
    assert (await _where(rfc_app, "10.0.0.1", both))["url"] == "https://rfc.example/where"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("forwarded", ["forwarded", ["127.0.0.1"]]),
        ("x-forwarded", ["x-forwarded", ["127.0.0.1"]]),
    ],
)
def test_proxy_headers_type_variable(clean_env: pytest.MonkeyPatch, value: str, expected: list[Any]) -> None:
    clean_env.setenv("C2C__PROXY_HEADERS__TYPE", value)
    loaded = config.Settings().proxy_headers
    assert [loaded.type, loaded.trusted_hosts] == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1,10.0.0.0/8", ["127.0.0.1", "10.0.0.0/8"]),
        ('["127.0.0.1", "10.0.0.0/8"]', ["127.0.0.1", "10.0.0.0/8"]),
        ("*", ["*"]),
    ],
)
def test_proxy_headers_trusted_hosts_variable(clean_env: pytest.MonkeyPatch, value: str, expected: list[str]) -> None:
    clean_env.setenv("C2C__PROXY_HEADERS__TRUSTED_HOSTS", value)
    assert config.Settings().proxy_headers.trusted_hosts == expected


def test_proxy_headers_type_refuses_unknown(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("C2C__PROXY_HEADERS__TYPE", "x-real-ip")
    with pytest.raises(ValueError, match="C2C__PROXY_HEADERS__TYPE"):
        config.load_settings()


# --------------------------------------------------------------------------------------------------
# Settings: every documented setting, its default and its variable
# --------------------------------------------------------------------------------------------------

# The documented defaults and variables: one table, shared with test_settings.py (durations are timedeltas
# there; the specification documents them in seconds, so they are compared in seconds here).
DOCUMENTED_DEFAULTS: list[tuple[str, Any]] = SPEC_DEFAULTS


def _resolve(loaded: Any, path: str) -> Any:
    value = loaded
    for part in path.split("."):
        value = getattr(value, part)
    return value


def _comparable(value: Any) -> Any:
    return value.total_seconds() if isinstance(value, timedelta) else value


@pytest.mark.parametrize(("path", "expected"), DOCUMENTED_DEFAULTS, ids=[path for path, _ in DOCUMENTED_DEFAULTS])
def test_documented_default(clean_env: pytest.MonkeyPatch, path: str, expected: Any) -> None:
    assert _comparable(_resolve(config.Settings(), path)) == _comparable(expected)


def test_redis_options_default_is_empty_and_accepts_none(clean_env: pytest.MonkeyPatch) -> None:
    # Documented "default value: None": no option. An explicit None is accepted as "no option" too.
    assert not config.Settings().redis.options
    assert not config.Settings(redis={"options": None}).redis.options


def test_sentry_project_root_defaults_to_working_directory(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.chdir(tmp_path)
    assert config.Settings().sentry.project_root == str(tmp_path)


def test_same_site_accepts_the_documented_values(clean_env: pytest.MonkeyPatch) -> None:
    for value in ("lax", "strict", "none"):
        clean_env.setenv("C2C__AUTH__JWT__COOKIE__SAME_SITE", value)
        assert config.Settings().auth.jwt.cookie.same_site == value
    clean_env.setenv("C2C__AUTH__JWT__COOKIE__SAME_SITE", "sometimes")
    with pytest.raises(ValueError, match="C2C__AUTH__JWT__COOKIE__SAME_SITE"):
        config.load_settings()


# (variable, text, attribute path, value read)
DOCUMENTED_VARIABLES: list[tuple[str, str, str, Any]] = FROM_ENVIRONMENT


@pytest.mark.parametrize(
    ("variable", "text", "path", "expected"), DOCUMENTED_VARIABLES, ids=[item[0] for item in DOCUMENTED_VARIABLES]
)
def test_documented_variable(clean_env: pytest.MonkeyPatch, variable: str, text: str, path: str, expected: Any) -> None:
    clean_env.setenv(variable, text)
    if variable == "C2C__REDIS__SENTINELS":
        clean_env.setenv("C2C__REDIS__SERVICENAME", "mymaster")
    assert _comparable(_resolve(config.Settings(), path)) == _comparable(expected)


def test_redis_servicename_variable(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("C2C__REDIS__SERVICENAME", "mymaster")
    assert config.Settings().redis.servicename == "mymaster"


def test_every_documented_variable_is_covered() -> None:
    """The two tables above name every leaf setting of the specification's list."""
    documented = {path for path, _ in DOCUMENTED_DEFAULTS} | {"redis.options", "sentry.project_root"}
    with_variable = {path for _, _, path, _ in DOCUMENTED_VARIABLES} | {"redis.servicename", "sentry.tags"}
    assert documented - with_variable == set()


def test_sentry_tag_variables(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("C2C__SENTRY__TAG_SERVICE", "my-service")
    clean_env.setenv("C2C__SENTRY__TAG_Team", "ops")
    assert config.Settings().sentry.tags == {"service": "my-service", "team": "ops"}


SENTRY_INIT_CALLS = {
    # The "Sentry" section.
    "sentry": "sentry_sdk.init(**{k: v for k, v in config.settings.sentry.model_dump().items() "
    'if v is not None and k != "tags"})',
    # The "CLI" section passes the whole dump.
    "cli": "sentry_sdk.init(**config.settings.sentry.model_dump())",
}


@pytest.mark.parametrize("section", sorted(SENTRY_INIT_CALLS))
def test_sentry_snippet_of_the_specification_runs(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, fake_sentry: FakeSentry, section: str
) -> None:
    """The Sentry snippets, verbatim, with a DSN of a fake Sentry on 127.0.0.1 (never reaches the network).

    Both use ``config.settings.sentry.url`` in their log line and pass ``model_dump()`` to ``sentry_sdk.init``;
    the event the script then sends arrives with the environment and the tags of the settings.
    """
    script = tmp_path / "sentry_snippet.py"
    script.write_text(
        textwrap.dedent(
            """
            import logging
            import os

            import sentry_sdk

            from c2casgiutils import config

            _LOGGER = logging.getLogger(__name__)

            # Initialize Sentry if the URL is provided
            if config.settings.sentry.dsn or 'SENTRY_DSN' in os.environ:
                _LOGGER.info(
                    "Sentry is enabled with URL: %s", config.settings.sentry.url or os.environ.get("SENTRY_DSN")
                )
                SNIPPET
                for tag, value in config.settings.sentry.tags.items():
                    sentry_sdk.set_tag(tag, value)
            print(sentry_sdk.get_client().is_active())
            sentry_sdk.capture_message("from the snippet")
            sentry_sdk.flush(timeout=10)
            """
        ),
        encoding="utf-8",
    )
    script.write_text(script.read_text(encoding="utf-8").replace("SNIPPET", SENTRY_INIT_CALLS[section]))
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith("C2C__")},
        "C2C__SENTRY__DSN": fake_sentry.dsn(),
        "C2C__SENTRY__ENVIRONMENT": "spec",
        "C2C__SENTRY__TAG_SERVICE": "my-service",
        "C2C__PROMETHEUS__PORT": "",
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"
    (event,) = fake_sentry.wait_events(1)
    assert event["environment"] == "spec"
    assert event["tags"] == {"service": "my-service"}


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


async def test_cli_example(tmp_path: Path, package_cleanup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    logging_yaml = tmp_path / "logging.yaml"
    logging_yaml.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "loggers": {"spec_cli_probe": {"level": "ERROR"}},
            }
        ),
        encoding="utf-8",
    )
    probe = logging.getLogger("spec_cli_probe")
    previous_level = probe.level
    monkeypatch.setattr(sys, "argv", ["my-app", "--logging-config", str(logging_yaml)])
    try:
        parser = ArgumentParser(description="My Application CLI")
        cli.add_arguments(parser)
        args = parser.parse_args()
        await cli.init(args)
        assert probe.level == logging.ERROR
        # cli.init starts the broadcast: a decorated function answers in this process.
        answer = await (await broadcast.decorate(_echo_handler, expect_answers=True))(message="cli")
        assert [type(item.payload).__name__ for item in answer if isinstance(item, broadcast_types.BroadcastResponse)]
    finally:
        probe.setLevel(previous_level)


def test_cli_add_arguments_has_a_default_logging_config() -> None:
    parser = ArgumentParser()
    cli.add_arguments(parser)
    assert parser.parse_args([]).logging_config == "logging.yaml"


# --------------------------------------------------------------------------------------------------
# Cookiecutter
# --------------------------------------------------------------------------------------------------


def test_cookiecutter_json_prompts_for_slug_and_description() -> None:
    template = json.loads((ROOT / "scaffold" / "cookiecutter.json").read_text(encoding="utf-8"))
    assert {"project_slug", "project_description"} <= set(template)


@pytest.mark.parametrize("form", ["scaffold/", "--directory scaffold"])
def test_cookiecutter_no_input_generates_a_project(tmp_path: Path, form: str) -> None:
    state = tmp_path / "state"
    config_file = tmp_path / "cookiecutter.yaml"
    config_file.write_text(
        yaml.safe_dump({"cookiecutters_dir": str(state / "templates"), "replay_dir": str(state / "replay")}),
        encoding="utf-8",
    )
    output = tmp_path / "out"
    template_args = [str(ROOT / "scaffold")] if form == "scaffold/" else [str(ROOT), "--directory", "scaffold"]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cookiecutter",
            "--no-input",
            "--config-file",
            str(config_file),
            "--output-dir",
            str(output),
            *template_args,
            "project_slug=spec_service",
            "project_description=Made by the spec test",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    project = output / "spec_service"
    assert project.is_dir()
    generated = "\n".join(
        path.read_text(encoding="utf-8", errors="replace") for path in project.rglob("*") if path.is_file()
    )
    assert "Made by the spec test" in generated
    assert (project / "README.md").is_file()
