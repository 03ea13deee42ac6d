"""A lifespan that starts c2casgiutils and records that the framework passed the events through our middlewares."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import c2casgiutils

EVENTS: list[str] = []
"""``"<name>:startup"`` / ``"<name>:shutdown"`` in the order the lifespans ran (this process)."""


def c2c_lifespan(name: str) -> Any:
    """A lifespan context manager factory (with or without an app argument) that runs c2casgiutils'."""

    @asynccontextmanager
    async def lifespan(app: Any = None) -> AsyncIterator[None]:
        del app
        await c2casgiutils.startup()
        EVENTS.append(f"{name}:startup")
        try:
            yield
        finally:
            await c2casgiutils.shutdown()
            EVENTS.append(f"{name}:shutdown")

    return lifespan
