"""Serve the same requests through one request-metrics stack and print its samples (run in a fresh interpreter).

    python -m tests.prometheus_apps.compare instrumentator|c2c

Durations vary from run to run: only the label sets of their samples and their counts are printed.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import httpx
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import StreamingResponse
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import c2casgiutils
from c2casgiutils import prometheus


def build(stack: str) -> FastAPI:
    app = FastAPI()
    app.mount("/c2c", c2casgiutils.app)
    router = APIRouter(prefix="/api")

    @router.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item": item_id}

    @router.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    @router.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> Any:
            for index in range(3):
                yield f"chunk {index};".encode()

        return StreamingResponse(chunks())

    @router.get("/fail")
    async def fail() -> None:
        raise RuntimeError("boom")

    app.include_router(router)

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    if stack == "instrumentator":
        from prometheus_fastapi_instrumentator import Instrumentator

        Instrumentator(should_instrument_requests_inprogress=True).instrument(app)
    else:
        app.add_middleware(prometheus.PrometheusMiddleware)
    return app


async def drive(app: FastAPI) -> list[str]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    bodies = []
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for path in ("/hello", "/hello", "/hello", "/api/items/1", "/api/items/2", "/nowhere", "/c2c/health_checks"):
            await client.get(path)
        await client.post("/api/echo", content=b"hello world")
        await client.post("/api/echo", content=b"")
        bodies.append((await client.get("/api/stream")).text)
        await client.get("/api/fail")
        await client.delete("/hello")  # path matches, method does not: 405
    return bodies


def samples() -> dict[str, float | None]:
    text = generate_latest(prometheus.build_registry()).decode()
    found: dict[str, float | None] = {}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("http_"):
            continue
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            labels = ",".join(f"{key}={value}" for key, value in sorted(sample.labels.items()))
            timed = "duration" in sample.name and not sample.name.endswith("_count")
            # The health report carries its own duration: its length varies by a digit.
            varying = sample.name == "http_response_size_bytes_sum" and "health" in labels
            found[f"{sample.name}{{{labels}}}"] = None if timed or varying else sample.value
    return found


def main() -> None:
    app = build(sys.argv[1])
    bodies = asyncio.run(drive(app))
    print(json.dumps({"samples": samples(), "bodies": bodies}))


if __name__ == "__main__":
    main()
