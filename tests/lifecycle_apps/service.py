"""A small service run by real uvicorn (one process or ``--workers N``) in the drain and rolling-restart tests.

``GET /`` answers its pid, ``GET /slow?seconds=`` answers after a while (bounded), both through
``lifecycle.DrainMiddleware``; the metrics server runs when ``C2C__PROMETHEUS__PORT`` is set.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from fastapi import FastAPI, Query

import c2casgiutils
from c2casgiutils import lifecycle, prometheus

prometheus.start_metrics_server()  # at import in each worker, as the demo does
app = FastAPI(lifespan=c2casgiutils.lifespan)
app.mount("/c2c", c2casgiutils.app)
app.add_middleware(prometheus.PrometheusMiddleware)
app.add_middleware(lifecycle.DrainMiddleware)


@app.get("/")
async def hello() -> dict[str, Any]:
    return {"pid": os.getpid(), "state": lifecycle.process_state().value}


@app.get("/slow")
async def slow(seconds: float = Query(default=2.0, ge=0.0, le=30.0)) -> dict[str, Any]:
    await asyncio.sleep(seconds)
    return {"pid": os.getpid(), "slept": seconds, "state": lifecycle.process_state().value}
