"""Alembic check: the database revision(s) against the head(s) of the migration scripts."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from c2casgiutils._health import database
from c2casgiutils._health.check import Check
from c2casgiutils._health.models import Result
from c2casgiutils._optional import require

if TYPE_CHECKING:
    import alembic.script
    import sqlalchemy

_FEATURE = "The Alembic health check"


class Alembic(Check):
    """Healthy when the database is at every head of the scripts (``alembic upgrade heads`` done).

    The payload reports ``current`` (revisions stamped in the database) and ``head`` (heads of the
    scripts), and ``branches`` (label -> head) when the scripts use branch labels. A database behind
    a head lists the heads it misses in ``pending``; a revision unknown to the scripts (the database
    is newer than the code) is reported in ``unknown``.
    """

    def __init__(
        self,
        Session: database.SessionSource,  # noqa: N803 - the documented keyword
        config_file: str | os.PathLike[str] = "alembic.ini",
        tags: Iterable[str] | None = None,
        *,
        name: str | None = None,
        timeout: float | timedelta | None = None,
        cache_ttl: float | timedelta | None = None,
        version_table: str = "alembic_version",
        version_table_schema: str | None = None,
    ) -> None:
        """Configure the check; the configuration file is read at the first run."""
        super().__init__(tags=tags, name=name, timeout=timeout, cache_ttl=cache_ttl)
        require("alembic", "alembic", _FEATURE)
        database.validate_source(Session, _FEATURE)
        self.Session = Session  # pylint: disable=invalid-name
        self.config_file = config_file
        self.version_table = version_table
        self.version_table_schema = version_table_schema
        self._script: alembic.script.ScriptDirectory | None = None

    def _load_script(self) -> alembic.script.ScriptDirectory:
        """The migration scripts, read once (they do not change while the service runs)."""
        if self._script is None:
            alembic_config = require("alembic.config", "alembic", _FEATURE)
            alembic_script = require("alembic.script", "alembic", _FEATURE)
            path = Path(self.config_file)
            if not path.is_file():
                raise FileNotFoundError(f"Alembic configuration file {str(path)!r} not found (cwd: {Path.cwd()})")
            self._script = alembic_script.ScriptDirectory.from_config(alembic_config.Config(str(path)))
        return self._script

    def _current_heads(self, connection: sqlalchemy.Connection) -> tuple[str, ...]:
        migration = require("alembic.runtime.migration", "alembic", _FEATURE)
        context = migration.MigrationContext.configure(
            connection,
            opts={"version_table": self.version_table, "version_table_schema": self.version_table_schema},
        )
        return tuple(context.get_current_heads())

    async def check(self) -> Result:
        """Compare the database with the scripts."""
        alembic_util = require("alembic.util", "alembic", _FEATURE)
        script = await asyncio.to_thread(self._load_script)
        current = sorted(await database.run_on_connection(self.Session, self._current_heads))
        heads = sorted(script.get_heads())
        payload: dict[str, Any] = {"current": current, "head": heads}
        branches = {label: head for head in heads for label in sorted(script.get_revision(head).branch_labels or ())}
        if branches:
            payload["branches"] = branches
        if current == heads:
            return Result(payload=payload)

        unknown = []
        for revision in current:
            try:
                script.get_revision(revision)
            except alembic_util.CommandError:
                unknown.append(revision)
        if unknown:
            payload["unknown"] = unknown
            payload["error"] = (
                "The database has revisions the migration scripts do not know (is the code older than the database?)"
            )
        else:
            payload["pending"] = [head for head in heads if head not in current]
            payload["error"] = (
                "The database is not stamped: run the migrations (alembic upgrade heads)"
                if not current
                else "The database is behind the migration head(s): run the migrations (alembic upgrade heads)"
            )
        return Result(status_code=500, payload=payload)
