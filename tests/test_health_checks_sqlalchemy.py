"""The SQLAlchemy check against real PostgreSQL (asyncpg and psycopg) and SQLite (aiosqlite)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker

from c2casgiutils import health_checks
from tests.servers import BlackHole, PostgresServer


async def _run_one(check: health_checks.Check) -> health_checks.EntityResult:
    factory = health_checks.Factory()
    factory.add(check)
    (entity,) = (await factory.run()).entities
    return entity


@pytest.fixture
async def async_engines() -> AsyncIterator[Callable[[str], Any]]:
    """Create async engines that are disposed after the test."""
    engines: list[Any] = []

    def create(url: str, **kwargs: Any) -> Any:
        engine = create_async_engine(url, **kwargs)
        engines.append(engine)
        return engine

    yield create
    for engine in engines:
        await engine.dispose()


@pytest.fixture
def sync_engines() -> Iterator[Callable[[str], sqlalchemy.Engine]]:
    engines: list[sqlalchemy.Engine] = []

    def create(url: str, **kwargs: Any) -> sqlalchemy.Engine:
        engine = sqlalchemy.create_engine(url, **kwargs)
        engines.append(engine)
        return engine

    yield create
    for engine in engines:
        engine.dispose()


async def test_postgresql_async_sessionmaker(postgres_server: PostgresServer, async_engines) -> None:  # type: ignore[no-untyped-def]
    Session = async_sessionmaker(async_engines(postgres_server.url()))
    entity = await _run_one(health_checks.SQLAlchemy(Session=Session, tags=["database", "all"]))
    assert entity.status_code == 200
    assert entity.name == "SQLAlchemy"
    assert entity.payload["database"].startswith("postgresql+asyncpg://c2c:***@127.0.0.1:")
    assert postgres_server.password not in json.dumps(entity.payload)


async def test_postgresql_async_engine(postgres_server: PostgresServer, async_engines) -> None:  # type: ignore[no-untyped-def]
    entity = await _run_one(health_checks.SQLAlchemy(async_engines(postgres_server.url())))
    assert entity.status_code == 200


async def test_postgresql_sync_sessionmaker_and_engine(postgres_server: PostgresServer, sync_engines) -> None:  # type: ignore[no-untyped-def]
    engine = sync_engines(postgres_server.url("postgresql+psycopg"))
    with_session = await _run_one(health_checks.SQLAlchemy(Session=sessionmaker(engine), name="sync-session"))
    with_engine = await _run_one(health_checks.SQLAlchemy(Session=engine, name="sync-engine"))
    assert (with_session.status_code, with_engine.status_code) == (200, 200)
    assert with_session.payload["database"].startswith("postgresql+psycopg://c2c:***@")


async def test_postgresql_failing_query(postgres_server: PostgresServer, async_engines) -> None:  # type: ignore[no-untyped-def]
    Session = async_sessionmaker(async_engines(postgres_server.url()))
    entity = await _run_one(health_checks.SQLAlchemy(Session=Session, query="SELECT * FROM no_such_table"))
    assert entity.status_code == 500
    assert "no_such_table" in entity.payload["error"]
    assert entity.payload["exception"] == "ProgrammingError"


async def test_postgresql_wrong_password_is_reported_without_credentials(
    postgres_server: PostgresServer,
    async_engines,  # type: ignore[no-untyped-def]
) -> None:
    url = postgres_server.url().replace(postgres_server.password, "wrong-db-password")
    entity = await _run_one(health_checks.SQLAlchemy(Session=async_sessionmaker(async_engines(url))))
    assert entity.status_code == 500
    assert "password authentication failed" in entity.payload["error"]
    text = json.dumps(entity.payload)
    assert "wrong-db-password" not in text
    assert postgres_server.password not in text


async def test_postgresql_black_hole_is_bounded(black_hole: BlackHole, async_engines) -> None:  # type: ignore[no-untyped-def]
    url = f"postgresql+asyncpg://c2c:secret-in-url@127.0.0.1:{black_hole.port}/c2c"
    Session = async_sessionmaker(async_engines(url, connect_args={"timeout": 60}))
    start = time.monotonic()
    entity = await _run_one(health_checks.SQLAlchemy(Session=Session, timeout=0.5))
    assert time.monotonic() - start < 0.5 + 2.0
    assert entity.status_code == 500
    assert entity.payload["error"] == "timeout"


async def test_sqlite_aiosqlite(tmp_path: Path, async_engines) -> None:  # type: ignore[no-untyped-def]
    Session = async_sessionmaker(async_engines(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"))
    entity = await _run_one(health_checks.SQLAlchemy(Session=Session))
    assert entity.status_code == 200
    assert entity.payload["database"].startswith("sqlite+aiosqlite:///")


async def test_sqlite_unreachable_file(tmp_path: Path, async_engines) -> None:  # type: ignore[no-untyped-def]
    Session = async_sessionmaker(async_engines(f"sqlite+aiosqlite:///{tmp_path / 'missing-dir' / 'db.sqlite'}"))
    entity = await _run_one(health_checks.SQLAlchemy(Session=Session))
    assert entity.status_code == 500
    assert "unable to open database file" in entity.payload["error"]
    await _aiosqlite_threads_stopped()


async def _aiosqlite_threads_stopped() -> None:
    """aiosqlite stops its worker thread after a failed connect without waiting: let it finish on this loop."""
    deadline = time.monotonic() + 5
    while any("_connection_worker_thread" in thread.name for thread in threading.enumerate()):
        assert time.monotonic() < deadline, "aiosqlite worker thread still running"
        await asyncio.sleep(0.02)


def test_refuses_what_is_not_a_session_source() -> None:
    with pytest.raises(TypeError, match="async_sessionmaker"):
        health_checks.SQLAlchemy(Session="postgresql://db/app")
