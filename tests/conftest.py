"""Shared fixtures: real redis-server and PostgreSQL on 127.0.0.1, a fake Sentry, settings isolation."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.fake_sentry import FakeSentry
from tests.sentinel_set import SentinelSet
from tests.servers import BlackHole, PostgresServer, RedisServer

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(what: str) -> None:
    """A service the tests need is not on this machine: a failure in CI, a skip elsewhere."""
    message = f"{what} is not installed (run the README's test command, which installs it)"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the whole session (flush it yourself if you need it empty)."""
    try:
        server = RedisServer()
    except FileNotFoundError:
        missing("redis-server")
    server.start()
    yield server
    server.close()


@pytest.fixture
def own_redis_server() -> Iterator[RedisServer]:
    """A redis-server for one test, free to be stopped and restarted."""
    try:
        server = RedisServer()
    except FileNotFoundError:
        missing("redis-server")
    server.start()
    yield server
    server.close()


@pytest.fixture
def sentinel_set() -> Iterator[SentinelSet]:
    """A real Sentinel set (master, replica, three Sentinels) for one test; its logs are printed when it fails."""
    try:
        servers = SentinelSet()
    except FileNotFoundError as error:
        missing(str(error))
    try:
        servers.start()
        yield servers
    except BaseException:
        print(servers.log_text())
        raise
    finally:
        servers.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        server = PostgresServer()
    except FileNotFoundError:
        missing("PostgreSQL server (initdb/pg_ctl)")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fake_sentry() -> Iterator[FakeSentry]:
    """A fake Sentry ingest server on 127.0.0.1 (``fake_sentry.dsn()``, ``fake_sentry.events``)."""
    server = FakeSentry()
    server.start()
    yield server
    server.close()


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    hole = BlackHole()
    yield hole
    hole.close()


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A fresh copy of the settings for one test, restored afterwards.

    Tests change it in place (``settings.redis.url = ...``); modules read ``config.settings`` at call time.
    """
    from c2casgiutils import config

    fresh = config.settings.model_copy(deep=True)
    monkeypatch.setattr(config, "settings", fresh)
    return fresh
