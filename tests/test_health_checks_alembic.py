"""The Alembic check with real migration folders (tests/health_fixtures) on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import alembic.command
import alembic.config
import pytest
import sqlalchemy
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker

from c2casgiutils import health_checks
from tests.servers import PostgresServer

FIXTURES = Path(__file__).parent / "health_fixtures"
LINEAR = FIXTURES / "linear.ini"
BRANCHES = FIXTURES / "branches.ini"


class Database:
    """One database with a sync URL to migrate it with alembic and an async URL for the check."""

    def __init__(self, sync_url: str, async_url: str) -> None:
        self.sync_engine = sqlalchemy.create_engine(sync_url)
        self.async_engine = create_async_engine(async_url)
        self.Session = async_sessionmaker(self.async_engine)

    def upgrade(self, config_file: Path, target: str) -> None:
        """Run the real migrations up to ``target``."""
        config = alembic.config.Config(str(config_file))
        with self.sync_engine.begin() as connection:
            config.attributes["connection"] = connection
            alembic.command.upgrade(config, target)

    def execute(self, sql: str) -> None:
        with self.sync_engine.begin() as connection:
            connection.execute(sqlalchemy.text(sql))

    async def close(self) -> None:
        self.sync_engine.dispose()
        await self.async_engine.dispose()


@pytest.fixture
async def sqlite_database(tmp_path: Path) -> AsyncIterator[Database]:
    path = tmp_path / "app.sqlite"
    database = Database(f"sqlite:///{path}", f"sqlite+aiosqlite:///{path}")
    yield database
    await database.close()


@pytest.fixture
async def postgres_database(postgres_server: PostgresServer) -> AsyncIterator[Database]:
    name = f"alembic_{uuid.uuid4().hex[:12]}"
    postgres_server.psql(f"CREATE DATABASE {name}", database="postgres")
    database = Database(postgres_server.url("postgresql+psycopg", database=name), postgres_server.url(database=name))
    yield database
    await database.close()
    postgres_server.psql(f"DROP DATABASE {name}", database="postgres")


async def _run_one(check: health_checks.Check) -> health_checks.EntityResult:
    factory = health_checks.Factory()
    factory.add(check)
    (entity,) = (await factory.run()).entities
    return entity


async def test_not_stamped(sqlite_database: Database) -> None:
    entity = await _run_one(health_checks.Alembic(Session=sqlite_database.Session, config_file=LINEAR))
    assert entity.status_code == 500
    assert entity.payload["current"] == []
    assert entity.payload["head"] == ["0002"]
    assert entity.payload["pending"] == ["0002"]
    assert "not stamped" in entity.payload["error"]


async def test_behind_head(sqlite_database: Database) -> None:
    sqlite_database.upgrade(LINEAR, "0001")
    check = health_checks.Alembic(
        Session=sqlite_database.Session, config_file=str(LINEAR), tags=["migrations", "database", "all"]
    )
    entity = await _run_one(check)
    assert entity.name == "Alembic"
    assert entity.status_code == 500
    assert entity.payload["current"] == ["0001"]
    assert entity.payload["head"] == ["0002"]
    assert entity.payload["pending"] == ["0002"]
    assert "behind" in entity.payload["error"]
    # the same check object sees the upgrade (scripts are cached, the database is read every time)
    sqlite_database.upgrade(LINEAR, "head")
    assert (await _run_one(check)).status_code == 200


async def test_at_head(sqlite_database: Database) -> None:
    sqlite_database.upgrade(LINEAR, "head")
    entity = await _run_one(health_checks.Alembic(Session=sqlite_database.Session, config_file=LINEAR))
    assert entity.status_code == 200
    assert entity.payload == {"current": ["0002"], "head": ["0002"]}


async def test_database_newer_than_the_scripts(sqlite_database: Database) -> None:
    sqlite_database.upgrade(LINEAR, "head")
    sqlite_database.execute("UPDATE alembic_version SET version_num = 'f00d'")
    entity = await _run_one(health_checks.Alembic(Session=sqlite_database.Session, config_file=LINEAR))
    assert entity.status_code == 500
    assert entity.payload["unknown"] == ["f00d"]
    assert "do not know" in entity.payload["error"]


async def test_two_heads_one_applied(sqlite_database: Database) -> None:
    sqlite_database.upgrade(BRANCHES, "alpha@head")
    entity = await _run_one(health_checks.Alembic(Session=sqlite_database.Session, config_file=BRANCHES))
    assert entity.status_code == 500
    assert entity.payload["current"] == ["0002a"]
    assert entity.payload["head"] == ["0002a", "0002b"]
    assert entity.payload["branches"] == {"alpha": "0002a", "beta": "0002b"}
    assert entity.payload["pending"] == ["0002b"]


async def test_two_heads_both_applied(sqlite_database: Database) -> None:
    sqlite_database.upgrade(BRANCHES, "heads")
    entity = await _run_one(health_checks.Alembic(Session=sqlite_database.Session, config_file=BRANCHES))
    assert entity.status_code == 200
    assert entity.payload["current"] == ["0002a", "0002b"]
    assert entity.payload["head"] == ["0002a", "0002b"]


async def test_missing_configuration_file(sqlite_database: Database, tmp_path: Path) -> None:
    entity = await _run_one(
        health_checks.Alembic(Session=sqlite_database.Session, config_file=tmp_path / "alembic.ini")
    )
    assert entity.status_code == 500
    assert entity.payload["exception"] == "FileNotFoundError"
    assert "alembic.ini" in entity.payload["error"]


async def test_postgresql_behind_then_at_head(postgres_database: Database) -> None:
    postgres_database.upgrade(LINEAR, "0001")
    check = health_checks.Alembic(Session=postgres_database.Session, config_file=LINEAR)
    behind = await _run_one(check)
    assert behind.status_code == 500
    assert behind.payload["pending"] == ["0002"]
    postgres_database.upgrade(LINEAR, "head")
    assert (await _run_one(check)).status_code == 200


async def test_postgresql_sync_sessionmaker(postgres_database: Database) -> None:
    postgres_database.upgrade(LINEAR, "head")
    check = health_checks.Alembic(Session=sessionmaker(postgres_database.sync_engine), config_file=LINEAR)
    entity = await _run_one(check)
    assert entity.status_code == 200
    assert entity.payload["current"] == ["0002"]


async def test_custom_version_table(sqlite_database: Database) -> None:
    sqlite_database.execute("CREATE TABLE my_versions (version_num VARCHAR(32) PRIMARY KEY)")
    sqlite_database.execute("INSERT INTO my_versions VALUES ('0002')")
    default = await _run_one(health_checks.Alembic(Session=sqlite_database.Session, config_file=LINEAR))
    custom = await _run_one(
        health_checks.Alembic(Session=sqlite_database.Session, config_file=LINEAR, version_table="my_versions")
    )
    assert default.status_code == 500
    assert custom.status_code == 200


def test_refuses_what_is_not_a_session_source() -> None:
    bad: Any = 42
    with pytest.raises(TypeError):
        health_checks.Alembic(Session=bad)
