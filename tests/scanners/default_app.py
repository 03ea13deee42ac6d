"""A service with the package's defaults, as the documentation builds it: graded and rendered by the tests.

``uvicorn tests.scanners.default_app:app``: a JSON route at ``/``, the ``/c2c`` sub-app (admin page, health
checks) and FastAPI's ``/docs`` and ``/redoc``, behind ``ArmorHeaderMiddleware()`` with no configuration.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

import c2casgiutils
from c2casgiutils import headers


@asynccontextmanager
async def _lifespan(main_app: FastAPI) -> AsyncIterator[None]:
    await c2casgiutils.startup(main_app)
    try:
        yield
    finally:
        await c2casgiutils.shutdown(main_app)


app = FastAPI(title="graded service", lifespan=_lifespan)


@app.get("/")
async def hello() -> dict[str, str]:
    """A JSON route (Swagger UI's "Try it out" calls it)."""
    return {"hello": "world"}


app.mount("/c2c", c2casgiutils.app)
app.add_middleware(headers.ArmorHeaderMiddleware)
