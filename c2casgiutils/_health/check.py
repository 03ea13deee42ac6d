"""The base class of every health check, and the always-failing ``Wrong`` check."""

from __future__ import annotations

import abc
from collections.abc import Iterable
from datetime import timedelta

from c2casgiutils import config
from c2casgiutils._health.models import Result


def to_seconds(value: float | timedelta | None, what: str) -> float | None:
    """A positive number of seconds from seconds or a timedelta; None stays None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | timedelta):
        raise TypeError(f"{what} must be a number of seconds or a timedelta, got {type(value).__name__}")
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not seconds > 0:
        raise ValueError(f"{what} must be positive, got {seconds}")
    return seconds


def _validate_tags(tags: Iterable[str] | None) -> list[str]:
    if tags is None:
        return []
    if isinstance(tags, str):
        raise TypeError(f"tags must be a list of strings, got the string {tags!r}")
    result = list(tags)
    for tag in result:
        if not isinstance(tag, str) or not tag.strip() or "," in tag:
            raise ValueError(f"a tag must be a non-empty string without comma, got {tag!r}")
    return result


class Check(abc.ABC):
    """A health check: subclasses implement :meth:`check`.

    ``tags`` select the check in ``?tags=``; ``name`` identifies it (default: the class name) in
    ``?name=``, the report and the metrics. ``timeout`` (seconds) bounds one run (default:
    ``C2C__HEALTH_CHECKS__TIMEOUT``). With ``cache_ttl`` (seconds) the last result is served for that
    long, and concurrent requests share one run.
    """

    #: A failed result is logged as a warning; a check whose failures are expected states (readiness while
    #: the instance drains) sets it to False, so that every probe does not add a warning line.
    log_failures = True

    def __init__(
        self,
        tags: Iterable[str] | None = None,
        *,
        name: str | None = None,
        timeout: float | timedelta | None = None,
        cache_ttl: float | timedelta | None = None,
    ) -> None:
        """Configure the check; bad values raise at once, not at the first probe."""
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        self._tags = _validate_tags(tags)
        self._name = name
        self._timeout = to_seconds(timeout, "timeout")
        self._cache_ttl = to_seconds(cache_ttl, "cache_ttl")

    # Properties read with getattr defaults: a subclass may skip super().__init__() as the
    # reference package allowed.
    @property
    def tags(self) -> list[str]:
        """Tags used to select the check."""
        return getattr(self, "_tags", [])

    @tags.setter
    def tags(self, value: Iterable[str] | None) -> None:
        self._tags = _validate_tags(value)

    @property
    def name(self) -> str:
        """Name of the check in the report, the ``name`` filter and the metrics."""
        return getattr(self, "_name", None) or type(self).__name__

    @name.setter
    def name(self, value: str | None) -> None:
        self._name = value

    @property
    def timeout(self) -> float:
        """Seconds one run may take before it is reported as a timeout (read from settings at call time)."""
        own: float | None = getattr(self, "_timeout", None)
        return own if own is not None else config.settings.health_checks.timeout.total_seconds()

    @property
    def cache_ttl(self) -> float | None:
        """Seconds a result is reused, or None to run the check on every request."""
        return getattr(self, "_cache_ttl", None)

    @abc.abstractmethod
    async def check(self) -> Result:
        """Run the check: ``Result()`` when healthy, ``Result(status_code=500, payload=...)`` when not.

        Exceptions and timeouts are turned into a 500 result by the runner.
        """

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} tags={self.tags!r}>"


class Wrong(Check):
    """A check that always fails, to try probes and alerts (kept from the reference package)."""

    async def check(self) -> Result:
        """Fail."""
        return Result(status_code=500, payload={"error": "This check always fails (for testing purposes)"})
