"""A service run by real uvicorn processes in the tracing tests, wired like the scaffold.

``TEST_STATE_DIR`` steers it: ``/hold`` writes ``held/<pid>-<n>`` and waits for the ``release`` file. Spans are
exported when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (by ``c2casgiutils.startup()``); metrics are served on
``C2C__PROMETHEUS__PORT`` (several workers: ``PROMETHEUS_MULTIPROC_DIR``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request

import c2casgiutils
from c2casgiutils import errors, prometheus, request_id, tracing
from tests.held_requests import hold_until_released

_LOGGER = logging.getLogger("tracing_service")
STATE = Path(os.environ.get("TEST_STATE_DIR", "."))


@asynccontextmanager
async def _lifespan(main_app: FastAPI) -> AsyncIterator[None]:
    if os.environ.get("C2C__PROMETHEUS__PORT"):
        prometheus.start_metrics_server()
    await c2casgiutils.startup(main_app)
    try:
        yield
    finally:
        await c2casgiutils.shutdown(main_app)
        prometheus.stop_metrics_server()


app = FastAPI(lifespan=_lifespan, **tracing.fastapi_options())
app.mount("/c2c", c2casgiutils.app)
errors.install_error_handlers(app, client_errors=True)
if os.environ.get("C2C__PROMETHEUS__PORT"):
    app.add_middleware(prometheus.PrometheusMiddleware)
app.add_middleware(request_id.RequestIdMiddleware)


def _context() -> dict[str, Any]:
    context = tracing.get_trace_context()
    assert context is not None
    return {"trace_id": context.trace_id, "span_id": context.span_id, "parent_id": context.parent_id}


@app.get("/hello")
async def hello() -> dict[str, Any]:
    _LOGGER.info("hello handled")
    return {"pid": os.getpid(), **_context()}


@app.get("/items/{item_id}")
async def item(item_id: int) -> dict[str, Any]:
    if item_id == 0:
        raise HTTPException(404, "no item 0")
    return {"pid": os.getpid(), "item": item_id, **_context()}


@app.get("/call")
async def call(url: str) -> dict[str, Any]:
    """Call ``url`` through the package's httpx helper and return both contexts."""
    _LOGGER.info("calling %s", url)
    async with request_id.async_client(timeout=10) as client:
        response = await client.get(url)
    return {"own": _context(), "downstream": response.json()}


@app.get("/headers")
async def headers(request: Request) -> dict[str, Any]:
    """The trace headers this request came with."""
    return {name: request.headers.get(name) for name in ("traceparent", "tracestate", "x-request-id")}


@app.get("/fail")
async def fail() -> None:
    raise RuntimeError("failing on purpose")


@app.get("/hold")
async def hold() -> dict[str, Any]:
    """Stay in progress until the ``release`` file exists (60 s at most)."""
    await hold_until_released(STATE)
    _LOGGER.info("hold released")
    return {"pid": os.getpid(), **_context()}
