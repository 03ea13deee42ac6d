"""The service's API: an example route{% if cookiecutter.database %} and an example database resource{% endif %}."""

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel{% if cookiecutter.database %}, ConfigDict, Field
from sqlalchemy import select

from {{ cookiecutter.project_slug }}.db import SessionDep
from {{ cookiecutter.project_slug }}.models import Item{% endif %}

router = APIRouter(prefix="/api", tags=["api"])


class Greeting(BaseModel):
    """Answer of the hello route."""

    message: str


@router.get("/hello")
async def hello(name: Annotated[str, Query(min_length=1, max_length=100)] = "world") -> Greeting:
    """Greet someone."""
    return Greeting(message=f"Hello {name}!")
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
