"""The registry of checks of a service, its selection by name and tags, and the concurrent run."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from c2casgiutils._health import runner
from c2casgiutils._health.check import Check
from c2casgiutils._health.models import GlobalResult

_LOGGER = logging.getLogger(__name__)


class UnknownCheckError(LookupError):
    """``?name=`` names no registered check."""


def parse_tags(tags: str | Iterable[str] | None) -> set[str]:
    """Tags from ``"a,b"`` or ``["a", "b,c"]``; empty items are ignored."""
    if tags is None:
        return set()
    items = [tags] if isinstance(tags, str) else list(tags)
    return {part.strip() for item in items for part in item.split(",") if part.strip()}


class Factory:
    """The checks of a service: ``add`` them at start-up, ``check``/``run`` them concurrently."""

    def __init__(self) -> None:
        self._checks: list[Check] = []

    def add(self, check: Check) -> None:
        """Register a check (adding the same object twice is a no-op)."""
        if not isinstance(check, Check):
            raise TypeError(f"expected a health_checks.Check, got {type(check).__name__}")
        if any(existing is check for existing in self._checks):
            return
        if check.name in self.names():
            # Allowed (as in the reference package) but ambiguous in ?name= and in the metrics.
            _LOGGER.warning(
                "A health check named %r is already registered: give each check a distinct name=", check.name
            )
        self._checks.append(check)

    def remove(self, check: Check | str) -> int:
        """Unregister a check, or every check of that name; returns how many were removed."""
        before = len(self._checks)
        if isinstance(check, str):
            self._checks = [item for item in self._checks if item.name != check]
        else:
            self._checks = [item for item in self._checks if item is not check]
        return before - len(self._checks)

    def clear(self) -> None:
        """Unregister every check."""
        self._checks = []

    @property
    def checks(self) -> tuple[Check, ...]:
        """The registered checks, in registration order."""
        return tuple(self._checks)

    def names(self) -> list[str]:
        """Names of the registered checks, in registration order, without repetition."""
        return list(dict.fromkeys(check.name for check in self._checks))

    def select(self, name: str | None = None, tags: str | Iterable[str] | None = None) -> list[Check]:
        """Checks with that name (if given) and having any of the tags (if given).

        Raises UnknownCheckError when ``name`` matches no registered check.
        """
        selected = self._checks
        if name:
            selected = [check for check in selected if check.name == name]
            if not selected:
                known = ", ".join(repr(known) for known in self.names()) or "none"
                raise UnknownCheckError(f"No health check named {name!r} (registered: {known})")
        wanted = parse_tags(tags)
        if wanted:
            selected = [check for check in selected if wanted.intersection(check.tags)]
        return list(selected)

    async def run(self, name: str | None = None, tags: str | Iterable[str] | None = None) -> GlobalResult:
        """Run the selected checks concurrently; the global status is the worst one (200 if none ran)."""
        start = time.perf_counter()
        selected = self.select(name, tags)
        entities = list(await asyncio.gather(*(runner.run(check) for check in selected))) if selected else []
        status_code = max((entity.status_code for entity in entities), default=200)
        return GlobalResult(status_code=status_code, time_taken=time.perf_counter() - start, entities=entities)

    async def check(self, name: str | None = None, tags: str | Iterable[str] | None = None) -> GlobalResult:
        """Same as :meth:`run` (the name the reference package uses)."""
        return await self.run(name, tags)
