"""A small service run by uvicorn with several workers in the metrics tests.

``TEST_STATE_DIR`` holds the files the test uses to steer it: ``fail-<pid>`` makes that worker's health check fail,
``release`` ends the requests held by ``/hold`` (each writes ``held/<pid>-<n>`` while it waits).
``TEST_METRICS`` picks the request metrics: ``instrumentator`` (prometheus-fastapi-instrumentator) or ``c2c``
(``c2casgiutils.prometheus.PrometheusMiddleware``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request

import c2casgiutils
from c2casgiutils import errors, health_checks, prometheus
from tests.held_requests import hold_until_released

STATE = Path(os.environ["TEST_STATE_DIR"])


class Flag(health_checks.Check):
    """Fails while this worker's ``fail-<pid>`` file exists; tells which worker ran it."""

    async def check(self) -> health_checks.Result:
        status_code = 500 if (STATE / f"fail-{os.getpid()}").exists() else 200
        return health_checks.Result(status_code=status_code, payload={"pid": os.getpid()})


@asynccontextmanager
async def _lifespan(main_app: FastAPI) -> AsyncIterator[None]:
    prometheus.start_metrics_server()
    await c2casgiutils.startup(main_app)
    try:
        yield
    finally:
        await c2casgiutils.shutdown(main_app)
        prometheus.stop_metrics_server()


app = FastAPI(lifespan=_lifespan)
app.mount("/c2c", c2casgiutils.app)
errors.install_error_handlers(app)  # inside the metrics middleware, as in the scaffold
if os.environ.get("TEST_METRICS", "instrumentator") == "c2c":
    app.add_middleware(prometheus.PrometheusMiddleware)
else:
    from prometheus_fastapi_instrumentator import Instrumentator

    Instrumentator(should_instrument_requests_inprogress=True).instrument(app)
health_checks.FACTORY.add(Flag(tags=["all"]))


@app.get("/hello")
async def hello() -> dict[str, Any]:
    return {"pid": os.getpid()}


@app.get("/items/{item_id}")
async def item(item_id: int) -> dict[str, Any]:
    return {"pid": os.getpid(), "item": item_id}


@app.post("/upload")
async def upload(request: Request) -> dict[str, Any]:
    return {"pid": os.getpid(), "size": len(await request.body())}


@app.get("/hold")
async def hold() -> dict[str, Any]:
    """Stay in progress until the ``release`` file exists (60 s at most)."""
    await hold_until_released(STATE)
    return {"pid": os.getpid()}
