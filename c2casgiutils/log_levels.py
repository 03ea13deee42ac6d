"""The log-level service: overrides of logger levels, stored for the whole service and applied in every process.

An override is stored by :class:`OverrideStore` (Redis under ``tools.logging.redis_prefix``, each write
confirmed on the master; this process's memory without Redis) and applied everywhere through the broadcast
(:func:`apply_everywhere`, whose handler is :func:`apply_override`). Every process restores the stored
overrides at start-up and after each reconnection to Redis (:func:`startup`). The admin routes
(``tools/log_levels.py``) and ``cli.init`` use it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from pydantic import BaseModel, Field

from c2casgiutils import broadcast, config, redis_utils
from c2casgiutils.broadcast.types import BroadcastResponse, MissingAnswer

_LOGGER = logging.getLogger(__name__)

LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "NOTSET")
ROOT = "root"
BROADCAST_CHANNEL = "c2c_logging_level"
NAME_MAX_LENGTH = 200


class LevelResponse(BaseModel):
    """The level of one logger in the process that answered."""

    name: str = Field(description="Logger name ('root' for the root logger)")
    level: str = Field(description="Level set on the logger itself (NOTSET: inherited)")
    effective_level: str = Field(description="Level in effect, after inheritance")


# ---------------------------------------------------------------------------------------------- this process


def check_logger_name(value: str) -> str:
    """The logger name without surrounding spaces; ValueError when it cannot be one."""
    name = value.strip()
    if not name or not name.isprintable():
        raise ValueError("a logger name is a non-empty printable string ('root' for the root logger)")
    return name


def check_level(value: str) -> str:
    """The level in capitals; ValueError listing the accepted levels when it is none of them."""
    normalized = value.strip().upper()
    if normalized not in LEVELS:
        raise ValueError(f"invalid level {value!r}: accepted levels are {', '.join(LEVELS)}")
    return normalized


def _logger(name: str) -> logging.Logger:
    return logging.getLogger() if name == ROOT else logging.getLogger(name)


def level_of(name: str) -> LevelResponse:
    """The level of a logger in this process."""
    logger = _logger(name)
    return LevelResponse(
        name=name,
        level=logging.getLevelName(logger.level),
        effective_level=logging.getLevelName(logger.getEffectiveLevel()),
    )


# Level of each logger before this process applied an override, to put it back when the override goes.
_ORIGINAL_LEVELS: dict[str, int] = {}


def apply_override(name: str, level: str | None) -> LevelResponse:
    """Set (or, with None, remove) an override in this process; the broadcast handler."""
    name = check_logger_name(name)
    logger = _logger(name)
    if level is None:
        if name in _ORIGINAL_LEVELS:
            logger.setLevel(_ORIGINAL_LEVELS.pop(name))
    else:
        if level not in LEVELS:
            raise ValueError(f"invalid level {level!r}: accepted levels are {', '.join(LEVELS)}")
        _ORIGINAL_LEVELS.setdefault(name, logger.level)
        logger.setLevel(level)
    return level_of(name)


# ---------------------------------------------------------------------------------------------- every process

ApplyEverywhere = Callable[..., Coroutine[Any, Any, list[BroadcastResponse[LevelResponse] | MissingAnswer]]]
_apply_everywhere: ApplyEverywhere | None = None


async def _everywhere() -> ApplyEverywhere:
    global _apply_everywhere  # noqa: PLW0603 - set once, when the broadcast is first needed
    if _apply_everywhere is None:
        _apply_everywhere = await broadcast.decorate(apply_override, channel=BROADCAST_CHANNEL, expect_answers=True)
    return _apply_everywhere


async def apply_everywhere(name: str, level: str | None) -> list[BroadcastResponse[LevelResponse] | MissingAnswer]:
    """Apply (or remove) an override in every process: one answer per process (``BroadcastUnavailableError``)."""
    return await (await _everywhere())(name=name, level=level)


# ---------------------------------------------------------------------------------------------- storage

# Overrides of this process when no Redis is configured.
_MEMORY_OVERRIDES: dict[str, str] = {}


def _glob_escape(text: str) -> str:
    return "".join(f"\\{char}" if char in "*?[]\\" else char for char in text)


class OverrideStore:
    """Where the overrides are kept: Redis (writes confirmed on the master) or, without Redis, this process."""

    def __init__(self, clients: redis_utils.RedisClients | None, prefix: str) -> None:
        self.clients = clients
        self.prefix = prefix

    @classmethod
    def from_settings(cls) -> OverrideStore:
        """The store the settings configure (Redis clients of the running event loop, the key prefix)."""
        return cls(redis_utils.get(), config.settings.tools.logging.redis_prefix)

    async def store(self, name: str, level: str | None) -> None:
        """Store (or remove) an override; with Redis, returns only once the current master confirmed it.

        Raises ``redis_utils.NotStoredError`` when it could not be confirmed (see ``redis_utils.confirmed_write``).
        """
        if self.clients is None:
            if level is None:
                _MEMORY_OVERRIDES.pop(name, None)
            else:
                _MEMORY_OVERRIDES[name] = level
            return
        key = self.prefix + name
        if level is None:
            what = f"removal of the logging override of {name!r}"
            await redis_utils.confirmed_write(self.clients, "DEL", key, what=what)
        else:
            await redis_utils.confirmed_write(self.clients, "SET", key, level, what=f"logging override {name}={level}")

    async def stored(self) -> dict[str, str]:
        """The stored overrides, by logger name (invalid entries in Redis are logged and left out)."""
        if self.clients is None:
            return dict(_MEMORY_OVERRIDES)
        # From the master: a change confirmed a moment ago must be seen, also during a failover.
        master = self.clients.master
        keys = [key async for key in master.scan_iter(match=_glob_escape(self.prefix) + "*", count=500)]
        if not keys:
            return {}
        values = await master.mget(keys)
        overrides: dict[str, str] = {}
        for key, value in zip(keys, values, strict=True):
            if value is None:
                continue  # deleted between SCAN and MGET
            name = redis_utils.as_text(key)[len(self.prefix) :]
            level = redis_utils.as_text(value).upper()
            if level in LEVELS and name:
                overrides[name] = level
            else:
                _LOGGER.warning("Ignored the invalid logging override %r=%r in Redis", name, level)
        return overrides


# ---------------------------------------------------------------------------------------------- start-up


async def restore_overrides(store: OverrideStore | None = None) -> None:
    """Make this process match the stored overrides (applied ones, and removed ones put back)."""
    overrides = await (store or OverrideStore.from_settings()).stored()
    for name in set(_ORIGINAL_LEVELS) - set(overrides):
        apply_override(name, None)
    for name, level in overrides.items():
        apply_override(name, level)
    if overrides:
        _LOGGER.info("Restored %d logging override(s): %s", len(overrides), overrides)


async def _restore_logged(bound: float | None = None) -> None:
    """Restore the overrides (within ``bound`` seconds if given); a failure is logged, never raised."""
    try:
        await asyncio.wait_for(restore_overrides(), bound)
    except Exception as error:
        _LOGGER.warning(
            "Could not restore the logging overrides from Redis %s: %s",
            redis_utils.describe(),
            redis_utils.safe_error(error),
        )


async def startup() -> None:
    """Subscribe the level handler and restore the stored overrides (and again after each Redis reconnection).

    Bounded: when the broadcast listener is not connected (Redis down at start-up) nothing waits; the
    restore runs when it connects.
    """
    broadcast.on_connected(_restore_logged)
    await _everywhere()
    if redis_utils.is_configured() and not broadcast.is_connected():
        _LOGGER.info("Logging overrides are restored when the broadcast listener connects to Redis")
        return
    await _restore_logged(redis_utils.write_bound())
