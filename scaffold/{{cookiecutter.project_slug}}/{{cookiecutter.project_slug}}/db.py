"""The database engine and the async session factory, built from the settings."""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from {{ cookiecutter.project_slug }}.config import settings


def create_engine() -> AsyncEngine:
    """An engine for ``{{ cookiecutter.project_slug | upper }}__DATABASE__URL``; pre-ping drops connections the server closed."""
    return create_async_engine(settings.database.url, echo=settings.database.echo, pool_pre_ping=True)


engine = create_engine()
Session = async_sessionmaker(engine, expire_on_commit=False)


async def get_session() -> AsyncIterator[AsyncSession]:
    """FastAPI dependency: one session per request, closed afterwards."""
    async with Session() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]
