"""The service's API: an example route, a broadcast to every process{% if cookiecutter.database %}, an example database resource{% endif %}."""

import os
import time
from collections.abc import Awaitable, Callable
from typing import Annotated

from c2casgiutils import broadcast
from fastapi import APIRouter, FastAPI, HTTPException, Query, Request
from pydantic import BaseModel{% if cookiecutter.database %}, ConfigDict, Field
from sqlalchemy import select

from {{ cookiecutter.project_slug }}.db import SessionDep
from {{ cookiecutter.project_slug }}.models import Item{% endif %}

router = APIRouter(prefix="/api", tags=["api"])
_STARTED = time.monotonic()


class Greeting(BaseModel):
    """Answer of the hello route."""

    message: str


@router.get("/hello")
async def hello(name: Annotated[str, Query(min_length=1, max_length=100)] = "world") -> Greeting:
    """Greet someone."""
    return Greeting(message=f"Hello {name}!")


class ProcessInfo(BaseModel):
    """What one process of the service reports."""

    pid: int
    uptime_seconds: float


async def process_info() -> ProcessInfo:
    """Run in every process by the broadcast."""
    return ProcessInfo(pid=os.getpid(), uptime_seconds=round(time.monotonic() - _STARTED, 3))


# One answer per process; a process that did not answer in time is a MissingAnswer.
ProcessAnswers = list[broadcast.BroadcastResponse[ProcessInfo] | broadcast.MissingAnswer]
ProcessInfoEverywhere = Callable[[], Awaitable[ProcessAnswers]]


async def subscribe_broadcasts(main_app: FastAPI) -> None:
    """Subscribe this process to the API's broadcasts; called in the lifespan, after c2casgiutils.startup."""
    main_app.state.process_info_everywhere = await broadcast.decorate(process_info, expect_answers=True)


@router.get("/processes")
async def processes(request: Request) -> ProcessAnswers:
    """Ask every process (every worker of every container, through Redis when configured) for its pid."""
    process_info_everywhere: ProcessInfoEverywhere = request.app.state.process_info_everywhere
    try:
        return await process_info_everywhere()
    except broadcast.BroadcastUnavailableError as error:
        raise HTTPException(status_code=503, detail=str(error)) from error
{%- if cookiecutter.database %}


class ItemCreate(BaseModel):
    """Body of an item creation."""

    name: str = Field(min_length=1, max_length=200)


class ItemRead(BaseModel):
    """An item as the API returns it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str


@router.get("/items")
async def list_items(
    session: SessionDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100, offset: Annotated[int, Query(ge=0)] = 0
) -> list[ItemRead]:
    """List the items, oldest first."""
    result = await session.scalars(select(Item).order_by(Item.id).limit(limit).offset(offset))
    return [ItemRead.model_validate(item) for item in result]


@router.post("/items", status_code=201)
async def create_item(body: ItemCreate, session: SessionDep) -> ItemRead:
    """Create an item."""
    item = Item(name=body.name)
    session.add(item)
    await session.commit()
    return ItemRead.model_validate(item)
{%- endif %}
