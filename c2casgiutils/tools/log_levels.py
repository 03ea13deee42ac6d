"""Admin routes of the logging levels: read a logger's level, change it in every process, list and remove overrides.

``POST /logging/level`` stores the override and applies it everywhere through the log-level service
(``c2casgiutils.log_levels``); the answer lists each process. All the routes require admin access.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, field_validator

from c2casgiutils import audit, auth, broadcast, log_levels, redis_utils
from c2casgiutils.broadcast.types import BroadcastResponse, ErrorAnswer, MissingAnswer
from c2casgiutils.log_levels import LEVELS, NAME_MAX_LENGTH, LevelResponse, OverrideStore

router = APIRouter(dependencies=[Depends(auth.require_admin_access)])
Store = Annotated[OverrideStore, Depends(OverrideStore.from_settings)]


# ---------------------------------------------------------------------------------------------- models


class SetLevelRequest(BaseModel):
    """A level to apply to a logger in every process."""

    name: str = Field(min_length=1, max_length=NAME_MAX_LENGTH, description="Logger name ('root' for the root)")
    level: str = Field(description=f"One of {', '.join(LEVELS)} (case-insensitive)")

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return log_levels.check_logger_name(value)

    @field_validator("level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        return log_levels.check_level(value)


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


# ---------------------------------------------------------------------------------------------- helpers


def _logger_name_or_422(value: str) -> str:
    """The checked logger name of a route parameter; an invalid one is a 422."""
    try:
        return log_levels.check_logger_name(value)
    except ValueError as error:
        raise HTTPException(422, str(error)) from None


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


@contextlib.contextmanager
def _unavailable_as_503() -> Iterator[None]:
    """Redis down: a clear 503, nothing half-done hidden."""
    try:
        yield
    except redis_utils.NotStoredError as error:
        raise HTTPException(
            503,
            f"Redis {redis_utils.describe()} is unavailable: the change is not stored and not applied "
            f"({redis_utils.safe_text(str(error))})",
        ) from None
    except Exception as error:
        if redis_utils.is_unavailable(error):
            raise HTTPException(
                503, f"Redis {redis_utils.describe()} is unavailable: {redis_utils.safe_error(error)}"
            ) from None
        raise


def _change_result(name: str, answers: list[BroadcastResponse[LevelResponse] | MissingAnswer]) -> Any:
    """200 only when every process that should have the change confirmed it; otherwise 502/504 with the list."""
    processes = [_process_answer(a) for a in answers]
    body = LevelChangeResponse(**log_levels.level_of(name).model_dump(), processes=processes)
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
        answers = await log_levels.apply_everywhere(name, level)
    except broadcast.BroadcastUnavailableError as error:
        detail = (
            f"Stored, but not sent to the processes: {redis_utils.safe_text(str(error))}; "
            "they apply it when they reconnect to Redis"
        )
        body = LevelChangeResponse(**log_levels.level_of(name).model_dump(), processes=[])
        return JSONResponse(status_code=502, content={"detail": detail, "stored": True, **body.model_dump()})
    return _change_result(name, answers)


async def _audited_change(
    http_request: Request, change: Callable[[], Awaitable[Any]], name: str, level: str | None
) -> Any:
    """Run ``change`` (set ``level``, or with None remove the override of ``name``) and write its one
    ``log_level_change`` audit record: who, which logger, its level here before and after.

    Outcome: ``success`` (200), ``partial`` (stored, not confirmed by every process: 502/504), ``failure``
    (not stored: 503, or no override to remove: 404).
    """
    old_level = log_levels.level_of(name).level
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
            new_level=level
            if level is not None or outcome == audit.Outcome.FAILURE
            else log_levels.level_of(name).level,
            removed=level is None,
            status=status,
        )


_CHANGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    502: {"description": "Stored, but not sent, or a process failed to apply it (body: detail and processes)"},
    503: {"description": "Redis unavailable: not stored, not applied"},
    504: {"description": "Stored, but some expected process did not confirm in time (body: detail and processes)"},
}


# ---------------------------------------------------------------------------------------------- routes


@router.get("/logging/level")
async def get_level(
    name: Annotated[str, Query(min_length=1, max_length=NAME_MAX_LENGTH, description="Logger name, or 'root'")],
) -> LevelResponse:
    """The level of a logger in the process that serves this request."""
    return log_levels.level_of(_logger_name_or_422(name))


@router.post("/logging/level", response_model=LevelChangeResponse, responses=_CHANGE_RESPONSES)
async def set_level(request: SetLevelRequest, store: Store, http_request: Request) -> Any:
    """Store an override (confirmed on the Redis master) and apply it in every process; lists each process."""

    async def change() -> Any:
        with _unavailable_as_503():
            await store.store(request.name, request.level)
        return await _broadcast_change(request.name, request.level)

    return await _audited_change(http_request, change, request.name, request.level)


@router.get("/logging/overrides")
async def list_overrides(store: Store) -> OverridesResponse:
    """The stored overrides."""
    with _unavailable_as_503():
        overrides = await store.stored()
    return OverridesResponse(
        overrides=[OverrideResponse(name=name, level=level) for name, level in sorted(overrides.items())]
    )


@router.delete("/logging/overrides/{name}", response_model=LevelChangeResponse, responses=_CHANGE_RESPONSES)
async def delete_override(
    name: Annotated[str, Path(min_length=1, max_length=NAME_MAX_LENGTH, description="Logger name, or 'root'")],
    store: Store,
    http_request: Request,
) -> Any:
    """Remove an override: every process puts the logger back to its level from before the override."""
    name = _logger_name_or_422(name)

    async def change() -> Any:
        with _unavailable_as_503():
            if name not in await store.stored():
                raise HTTPException(404, f"no logging override for {name!r}")
            await store.store(name, None)
        return await _broadcast_change(name, None)

    return await _audited_change(http_request, change, name, None)
