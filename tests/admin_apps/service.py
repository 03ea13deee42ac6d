"""A service as the documentation builds it: default security headers, request ids, JSON errors, /c2c.

Run by uvicorn in the tests (``uvicorn tests.admin_apps.service:app``), also with several workers; the
settings come from the ``C2C__*`` environment of the process.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request

import c2casgiutils
from c2casgiutils import headers, health_checks, request_id
from c2casgiutils.errors import install_error_handlers
from c2casgiutils.tools import debug as tools_debug
from c2casgiutils.tools import versions as tools_versions

_LOGGER = logging.getLogger("admin_service")


class AlwaysFine(health_checks.Check):
    """A check that passes, so the page shows a result row."""

    async def check(self) -> health_checks.Result:
        return health_checks.Result(status_code=200, payload={"message": "fine"})


@asynccontextmanager
async def _lifespan(main_app: FastAPI) -> AsyncIterator[None]:
    await c2casgiutils.startup(main_app)
    # Idempotent: harmless once c2casgiutils.startup registers them itself.
    await tools_debug.startup()
    await tools_versions.startup()
    try:
        yield
    finally:
        tools_debug.shutdown()
        tools_versions.shutdown()
        await c2casgiutils.shutdown(main_app)


app = FastAPI(title="admin test service", lifespan=_lifespan)

if not any(check.name == "AlwaysFine" for check in health_checks.FACTORY.checks):
    health_checks.FACTORY.add(AlwaysFine(tags=["liveness", "all"]))


@app.get("/hello")
async def hello() -> dict[str, str]:
    _LOGGER.info("hello handled")
    return {"hello": "world"}


@app.get("/boom")
async def boom() -> dict[str, str]:
    raise RuntimeError("the boom route always fails")


@app.get("/echo-request-id")
async def echo_request_id(request: Request) -> dict[str, str | None]:
    return {"request_id": request.state.request_id, "header": request.headers.get("x-request-id")}


@app.get("/call-echo")
async def call_echo(request: Request) -> dict[str, object]:
    """Call this service's /echo-request-id with the helper: the request id must go along."""
    async with request_id.async_client(base_url=str(request.base_url), timeout=5) as client:
        response = await client.get("/echo-request-id")
    return {"own": request.state.request_id, "downstream": response.json()}


app.mount("/c2c", c2casgiutils.app)
install_error_handlers(app)
app.add_middleware(request_id.RequestIdMiddleware)
app.add_middleware(headers.ArmorHeaderMiddleware)
