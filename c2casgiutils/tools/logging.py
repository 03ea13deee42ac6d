"""Logging levels tool: read a logger's level, and change it in every process at once.

``POST /logging/level`` stores the override (Redis under ``tools.logging.redis_prefix``, or this process's
memory without Redis) and applies it everywhere through the broadcast; every process restores the stored
overrides at start-up and after each reconnection to Redis. All the routes require admin access.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, field_validator

from c2casgiutils import audit, auth, broadcast, config, redis_utils
from c2casgiutils.broadcast._storage import NotStoredError, confirmed_write, write_bound
from c2casgiutils.broadcast.types import BroadcastResponse, ErrorAnswer, MissingAnswer
from c2casgiutils.tools._unavailable import is_unavailable

_LOGGER = logging.getLogger(__name__)

LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "NOTSET")
ROOT = "root"
BROADCAST_CHANNEL = "c2c_logging_level"
_NAME_MAX_LENGTH = 200

router = APIRouter(dependencies=[Depends(auth.require_admin_access)])


# ---------------------------------------------------------------------------------------------- models


class LevelResponse(BaseModel):
    """The level of one logger in the process that answered the request."""

    name: str = Field(description="Logger name ('root' for the root logger)")
    level: str = Field(description="Level set on the logger itself (NOTSET: inherited)")
    effective_level: str = Field(description="Level in effect, after inheritance")


class SetLevelRequest(BaseModel):
    """A level to apply to a logger in every process."""

    name: str = Field(min_length=1, max_length=_NAME_MAX_LENGTH, description="Logger name ('root' for the root)")
    level: str = Field(description=f"One of {', '.join(LEVELS)} (case-insensitive)")

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return _check_logger_name(value)

    @field_validator("level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        normalized = value.strip().upper()
        if normalized not in LEVELS:
            raise ValueError(f"invalid level {value!r}: accepted levels are {', '.join(LEVELS)}")
        return normalized


class ProcessAnswer(BaseModel):
    """How one process applied the change."""

    hostname: str | None = None
    pid: int | None = None
    status: Literal["ok", "timeout", "error"]
    message: str | None = None
    level: str | None = None
    effective_level: str | None = None


class LevelChangeResponse(LevelResponse):
    """The result of a change: the level here, and the answer of every process."""

    processes: list[ProcessAnswer] = Field(description="One entry per process that received the change")


class OverrideResponse(BaseModel):
    """One stored override."""

    name: str
    level: str


class OverridesResponse(BaseModel):
    """The stored overrides, restored by every process at start-up."""

    overrides: list[OverrideResponse]


# ---------------------------------------------------------------------------------------------- loggers


def _check_logger_name(value: str) -> str:
    name = value.strip()
    if not name or not name.isprintable():
        raise ValueError("a logger name is a non-empty printable string ('root' for the root logger)")
    return name


def _logger_name_or_422(value: str) -> str:
    """The checked logger name of a route parameter; an invalid one is a 422."""
    try:
        return _check_logger_name(value)
    except ValueError as error:
        raise HTTPException(422, str(error)) from None


def _logger(name: str) -> logging.Logger:
    return logging.getLogger() if name == ROOT else logging.getLogger(name)


def _state(name: str) -> LevelResponse:
    logger = _logger(name)
    return LevelResponse(
        name=name,
        level=logging.getLevelName(logger.level),
        effective_level=logging.getLevelName(logger.getEffectiveLevel()),
    )


# Level of each logger before this process applied an override, to put it back when the override goes.
_ORIGINAL_LEVELS: dict[str, int] = {}


def _apply_override(name: str, level: str | None) -> LevelResponse:
    """Set (or, with None, remove) an override in this process; the broadcast handler."""
    name = _check_logger_name(name)
    logger = _logger(name)
    if level is None:
        if name in _ORIGINAL_LEVELS:
            logger.setLevel(_ORIGINAL_LEVELS.pop(name))
    else:
        if level not in LEVELS:
            raise ValueError(f"invalid level {level!r}: accepted levels are {', '.join(LEVELS)}")
        _ORIGINAL_LEVELS.setdefault(name, logger.level)
        logger.setLevel(level)
    return _state(name)


ApplyEverywhere = Callable[..., Coroutine[Any, Any, list[BroadcastResponse[LevelResponse] | MissingAnswer]]]
_apply_everywhere: ApplyEverywhere | None = None


async def _everywhere() -> ApplyEverywhere:
    global _apply_everywhere  # noqa: PLW0603 - set once, when the broadcast is first needed
    if _apply_everywhere is None:
        _apply_everywhere = await broadcast.decorate(_apply_override, channel=BROADCAST_CHANNEL, expect_answers=True)
    return _apply_everywhere


def _process_answer(answer: BroadcastResponse[LevelResponse] | MissingAnswer) -> ProcessAnswer:
    if isinstance(answer, BroadcastResponse):
        return ProcessAnswer(
            hostname=answer.hostname,
            pid=answer.pid,
            status="ok",
            level=answer.payload.level,
            effective_level=answer.payload.effective_level,
        )
    if isinstance(answer, ErrorAnswer):
        message = f"{answer.error_type}: {answer.message}"
        return ProcessAnswer(hostname=answer.hostname, pid=answer.pid, status="error", message=message)
    return ProcessAnswer(hostname=answer.hostname, pid=answer.pid, status="timeout", message=answer.message)


# ---------------------------------------------------------------------------------------------- storage

# Overrides of this process when no Redis is configured.
_MEMORY_OVERRIDES: dict[str, str] = {}


def _redis_key(name: str) -> str:
    return config.settings.tools.logging.redis_prefix + name


def _glob_escape(text: str) -> str:
    return "".join(f"\\{char}" if char in "*?[]\\" else char for char in text)


async def _store(name: str, level: str | None) -> None:
    """Store (or remove) an override; with Redis, returns only once the current master confirmed it."""
    clients = redis_utils.get()
    if clients is None:
        if level is None:
            _MEMORY_OVERRIDES.pop(name, None)
        else:
            _MEMORY_OVERRIDES[name] = level
        return
    if level is None:
        await confirmed_write(clients, "DEL", _redis_key(name), what=f"removal of the logging override of {name!r}")
    else:
        await confirmed_write(clients, "SET", _redis_key(name), level, what=f"logging override {name}={level}")


async def _stored_overrides() -> dict[str, str]:
    clients = redis_utils.get()
    if clients is None:
        return dict(_MEMORY_OVERRIDES)
    prefix = config.settings.tools.logging.redis_prefix
    # From the master: a change confirmed a moment ago must be seen, also during a failover.
    keys = [key async for key in clients.master.scan_iter(match=_glob_escape(prefix) + "*", count=500)]
    if not keys:
        return {}
    values = await clients.master.mget(keys)
    overrides: dict[str, str] = {}
    for key, value in zip(keys, values, strict=True):
        if value is None:
            continue  # deleted between SCAN and MGET
        name = (key.decode() if isinstance(key, bytes) else str(key))[len(prefix) :]
        level = (value.decode() if isinstance(value, bytes) else str(value)).upper()
        if level in LEVELS and name:
            overrides[name] = level
        else:
            _LOGGER.warning("Ignored the invalid logging override %r=%r in Redis", name, level)
    return overrides


@contextlib.contextmanager
def _unavailable_as_503() -> Iterator[None]:
    """Redis down: a clear 503, nothing half-done hidden."""
    try:
        yield
    except NotStoredError as error:
        raise HTTPException(
            503,
            f"Redis {redis_utils.describe()} is unavailable: the change is not stored and not applied "
            f"({redis_utils.safe_text(str(error))})",
        ) from None
    except Exception as error:
        if is_unavailable(error):
            raise HTTPException(
                503, f"Redis {redis_utils.describe()} is unavailable: {redis_utils.safe_error(error)}"
            ) from None
        raise


async def restore_overrides() -> None:
    """Make this process match the stored overrides (applied ones, and removed ones put back)."""
    overrides = await _stored_overrides()
    for name in set(_ORIGINAL_LEVELS) - set(overrides):
        _apply_override(name, None)
    for name, level in overrides.items():
        _apply_override(name, level)
    if overrides:
        _LOGGER.info("Restored %d logging override(s): %s", len(overrides), overrides)


async def _restore_logged() -> None:
    try:
        await restore_overrides()
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
    try:
        await asyncio.wait_for(restore_overrides(), write_bound())
    except Exception as error:
        _LOGGER.warning(
            "Could not restore the logging overrides from Redis %s: %s",
            redis_utils.describe(),
            redis_utils.safe_error(error),
        )


# ---------------------------------------------------------------------------------------------- routes


@router.get("/logging/level")
async def get_level(
    name: Annotated[str, Query(min_length=1, max_length=_NAME_MAX_LENGTH, description="Logger name, or 'root'")],
) -> LevelResponse:
    """The level of a logger in the process that serves this request."""
    return _state(_logger_name_or_422(name))


def _change_result(name: str, answers: list[BroadcastResponse[LevelResponse] | MissingAnswer]) -> Any:
    """200 only when every process that should have the change confirmed it; otherwise 502/504 with the list."""
    processes = [_process_answer(a) for a in answers]
    body = LevelChangeResponse(**_state(name).model_dump(), processes=processes)
    timeouts = [p for p in processes if p.status == "timeout"]
    errors = [p for p in processes if p.status == "error"]
    if processes and not timeouts and not errors:
        return body
    if not processes:
        status, detail = 504, "Stored, but no process received the change"
    elif timeouts:
        status = 504
        detail = f"Stored, but {len(timeouts)} of {len(processes)} processes did not confirm the change in time"
    else:
        status = 502
        detail = f"Stored, but {len(errors)} of {len(processes)} processes failed to apply the change"
    detail += "; they apply the stored value when they reconnect to Redis or restart"
    return JSONResponse(status_code=status, content={"detail": detail, "stored": True, **body.model_dump()})


async def _broadcast_change(name: str, level: str | None) -> Any:
    try:
        answers = await (await _everywhere())(name=name, level=level)
    except broadcast.BroadcastUnavailableError as error:
        detail = (
            f"Stored, but not sent to the processes: {redis_utils.safe_text(str(error))}; "
            "they apply it when they reconnect to Redis"
        )
        body = LevelChangeResponse(**_state(name).model_dump(), processes=[])
        return JSONResponse(status_code=502, content={"detail": detail, "stored": True, **body.model_dump()})
    return _change_result(name, answers)


_CHANGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    502: {"description": "Stored, but not sent, or a process failed to apply it (body: detail and processes)"},
    503: {"description": "Redis unavailable: not stored, not applied"},
    504: {"description": "Stored, but some expected process did not confirm in time (body: detail and processes)"},
}


async def _audited_change(
    http_request: Request, change: Callable[[], Awaitable[Any]], name: str, level: str | None
) -> Any:
    """Run ``change`` (set ``level``, or with None remove the override of ``name``) and write its one
    ``log_level_change`` audit record: who, which logger, its level here before and after.

    Outcome: ``success`` (200), ``partial`` (stored, not confirmed by every process: 502/504), ``failure``
    (not stored: 503, or no override to remove: 404).
    """
    old_level = _state(name).level
    outcome, status = audit.Outcome.FAILURE, 500  # unless the change ends otherwise
    try:
        result = await change()
        status = result.status_code if isinstance(result, JSONResponse) else 200
        outcome = audit.Outcome.SUCCESS if status == 200 else audit.Outcome.PARTIAL
        return result
    except HTTPException as error:
        status = error.status_code
        raise
    finally:
        audit.record(
            http_request,
            audit.Event.LOG_LEVEL_CHANGE,
            outcome,
            logger_name=name,
            old_level=old_level,
            # A removal puts back the level from before the override: the one in effect here now.
            new_level=level if level is not None or outcome == audit.Outcome.FAILURE else _state(name).level,
            removed=level is None,
            status=status,
        )


@router.post("/logging/level", response_model=LevelChangeResponse, responses=_CHANGE_RESPONSES)
async def set_level(request: SetLevelRequest, http_request: Request) -> Any:
    """Store an override (confirmed on the Redis master) and apply it in every process; lists each process."""

    async def change() -> Any:
        with _unavailable_as_503():
            await _store(request.name, request.level)
        return await _broadcast_change(request.name, request.level)

    return await _audited_change(http_request, change, request.name, request.level)


@router.get("/logging/overrides")
async def list_overrides() -> OverridesResponse:
    """The stored overrides."""
    with _unavailable_as_503():
        overrides = await _stored_overrides()
    return OverridesResponse(
        overrides=[OverrideResponse(name=name, level=level) for name, level in sorted(overrides.items())]
    )


@router.delete("/logging/overrides/{name}", response_model=LevelChangeResponse, responses=_CHANGE_RESPONSES)
async def delete_override(
    name: Annotated[str, Path(min_length=1, max_length=_NAME_MAX_LENGTH, description="Logger name, or 'root'")],
    http_request: Request,
) -> Any:
    """Remove an override: every process puts the logger back to its level from before the override."""
    name = _logger_name_or_422(name)

    async def change() -> Any:
        with _unavailable_as_503():
            if name not in await _stored_overrides():
                raise HTTPException(404, f"no logging override for {name!r}")
            await _store(name, None)
        return await _broadcast_change(name, None)

    return await _audited_change(http_request, change, name, None)
