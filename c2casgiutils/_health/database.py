"""Run a function on a SQLAlchemy connection, whatever the service gives: async or sync sessions or engines.

Sync sessions and engines run in a worker thread so they never block the event loop; at the check's
timeout the thread is abandoned (it ends with the driver's own timeouts).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from c2casgiutils._optional import require

if TYPE_CHECKING:
    import sqlalchemy

T = TypeVar("T")

SessionSource = Any
"""An ``async_sessionmaker``, ``sessionmaker``, ``AsyncEngine``, ``Engine`` or callable returning a session."""


def validate_source(source: SessionSource, feature: str) -> None:
    """Raise TypeError at construction for something that cannot give a connection."""
    sqlalchemy = require("sqlalchemy", "sqlalchemy", feature)
    sqlalchemy_asyncio = require("sqlalchemy.ext.asyncio", "sqlalchemy", feature)
    if isinstance(source, sqlalchemy.Engine | sqlalchemy_asyncio.AsyncEngine) or callable(source):
        return
    raise TypeError(f"{feature} needs an async_sessionmaker, a sessionmaker or an engine, got {type(source).__name__}")


def describe_source(source: SessionSource) -> str | None:
    """The database URL of the engine behind the source, password hidden, when it can be found."""
    bind = getattr(source, "kw", {}).get("bind") if not hasattr(source, "url") else source
    url = getattr(bind, "url", None)
    render = getattr(url, "render_as_string", None)
    if render is None:
        return None
    return str(render(hide_password=True))


def _run_sync_source(source: SessionSource, function: Callable[[sqlalchemy.Connection], T]) -> T:
    sqlalchemy = require("sqlalchemy", "sqlalchemy")
    if isinstance(source, sqlalchemy.Engine):
        with source.connect() as connection:
            return function(connection)
    with source() as session:
        return function(session.connection())


async def run_on_connection(source: SessionSource, function: Callable[[sqlalchemy.Connection], T]) -> T:
    """Call ``function`` with a (sync) connection of the source, from the event loop."""
    sqlalchemy_asyncio = require("sqlalchemy.ext.asyncio", "sqlalchemy")
    if isinstance(source, sqlalchemy_asyncio.AsyncEngine):
        async with source.connect() as async_connection:
            result: T = await async_connection.run_sync(function)
            return result
    if isinstance(source, sqlalchemy_asyncio.async_sessionmaker | sqlalchemy_asyncio.async_scoped_session):
        async with source() as session:
            connection = await session.connection()
            session_result: T = await connection.run_sync(function)
            return session_result
    return await asyncio.to_thread(_run_sync_source, source, function)
