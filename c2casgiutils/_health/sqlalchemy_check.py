"""SQLAlchemy check: one simple query through the service's own sessions."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from c2casgiutils._health import database
from c2casgiutils._health.check import Check
from c2casgiutils._health.models import Result
from c2casgiutils._optional import require

if TYPE_CHECKING:
    import sqlalchemy


class SQLAlchemy(Check):
    """Run ``SELECT 1`` (or ``query``) on the database.

    ``Session`` is an ``async_sessionmaker`` (as in the specification), a sync ``sessionmaker``, an
    ``AsyncEngine`` or an ``Engine``.
    """

    def __init__(
        self,
        Session: database.SessionSource,  # noqa: N803 - the documented keyword
        tags: Iterable[str] | None = None,
        *,
        name: str | None = None,
        timeout: float | timedelta | None = None,
        cache_ttl: float | timedelta | None = None,
        query: str = "SELECT 1",
    ) -> None:
        """Configure the check."""
        super().__init__(tags=tags, name=name, timeout=timeout, cache_ttl=cache_ttl)
        database.validate_source(Session, "The SQLAlchemy health check")
        self.Session = Session  # pylint: disable=invalid-name
        self.query = query

    async def check(self) -> Result:
        """Run the query; a failure is a 500 with the (masked) error."""
        sqlalchemy_module = require("sqlalchemy", "sqlalchemy", "The SQLAlchemy health check")
        statement = sqlalchemy_module.text(self.query)

        def execute(connection: sqlalchemy.Connection) -> Any:
            return connection.execute(statement).scalar()

        payload: dict[str, Any] = {}
        url = database.describe_source(self.Session)
        if url is not None:
            payload["database"] = url
        try:
            await database.run_on_connection(self.Session, execute)
        except Exception as error:  # any driver error means unhealthy
            payload["error"] = str(error).split("\n", 1)[0] or type(error).__name__
            payload["exception"] = type(error).__name__
            return Result(status_code=500, payload=payload)
        return Result(payload=payload)
