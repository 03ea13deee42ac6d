"""PrometheusMiddleware: the series of prometheus-fastapi-instrumentator's defaults, as a pure ASGI middleware."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, generate_latest
from starlette.responses import PlainTextResponse

from c2casgiutils import _metrics_http
from c2casgiutils.prometheus import PrometheusMiddleware

ROOT = Path(__file__).parent.parent


def _served(stack: str, multiproc: Path | None) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("C2C__") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update({"PYTHONPATH": str(ROOT), "C2C__PROMETHEUS__PORT": ""})
    if multiproc is not None:
        multiproc.mkdir()
        env["PROMETHEUS_MULTIPROC_DIR"] = str(multiproc)
    result = subprocess.run(
        [sys.executable, "-m", "tests.prometheus_apps.compare", stack],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    served: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return served


@pytest.mark.parametrize("mode", ["single", "multi"])
def test_same_series_and_values_as_the_instrumentator(tmp_path: Path, mode: str) -> None:
    """Same requests, same samples: names, labels (handlers, statuses), counts and sizes."""
    reference = _served("instrumentator", tmp_path / "instrumentator" if mode == "multi" else None)
    ours = _served("c2c", tmp_path / "c2c" if mode == "multi" else None)
    assert ours["bodies"] == reference["bodies"] == ["chunk 0;chunk 1;chunk 2;"]  # streaming untouched
    assert ours["samples"] == reference["samples"]
    samples = ours["samples"]
    assert samples["http_requests_total{handler=/hello,method=GET,status=2xx}"] == 3
    assert samples["http_requests_total{handler=/api/items/{item_id},method=GET,status=2xx}"] == 2
    assert samples["http_requests_total{handler=none,method=GET,status=4xx}"] == 1
    assert samples["http_requests_total{handler=/c2c/health_checks,method=GET,status=2xx}"] == 1
    assert samples["http_requests_total{handler=/api/fail,method=GET,status=5xx}"] == 1
    assert samples["http_requests_total{handler=/hello,method=DELETE,status=4xx}"] == 1
    assert samples["http_request_size_bytes_sum{handler=/api/echo}"] == 11
    assert samples["http_request_size_bytes_count{handler=/api/echo}"] == 2
    assert samples["http_request_duration_highr_seconds_count{}"] == 12
    assert samples["http_requests_inprogress{}"] == 0
    if mode == "multi":
        assert any(path.name.startswith("counter_http_") for path in (tmp_path / "c2c").iterdir())


def _app(**options: Any) -> tuple[FastAPI, CollectorRegistry]:
    registry = CollectorRegistry()
    app = FastAPI()

    @app.get("/hello")
    async def hello() -> PlainTextResponse:
        return PlainTextResponse("hello")

    @app.get("/healthz")
    async def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    app.add_middleware(PrometheusMiddleware, registry=registry, **options)
    return app, registry


async def _get(app: FastAPI, *paths: str) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for path in paths:
            await client.get(path)


async def test_excluded_handlers_are_not_counted() -> None:
    app, registry = _app(excluded_handlers=["/healthz"], prefix="excl_")
    await _get(app, "/hello", "/healthz", "/healthz")
    assert (
        registry.get_sample_value("excl_http_requests_total", {"handler": "/hello", "method": "GET", "status": "2xx"})
        == 1
    )
    assert (
        registry.get_sample_value("excl_http_requests_total", {"handler": "/healthz", "method": "GET", "status": "2xx"})
        is None
    )


async def test_ungrouped_status_codes_and_a_bounded_route_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_metrics_http, "ROUTE_CACHE_SIZE", 3)
    app, registry = _app(group_status_codes=False, prefix="ungrouped_")
    await _get(app, *(f"/missing/{index}" for index in range(10)), "/hello")
    assert (
        registry.get_sample_value(
            "ungrouped_http_requests_total", {"handler": "none", "method": "GET", "status": "404"}
        )
        == 10
    )
    assert (
        registry.get_sample_value(
            "ungrouped_http_requests_total", {"handler": "/hello", "method": "GET", "status": "200"}
        )
        == 1
    )
    middleware = app.middleware_stack
    while not isinstance(middleware, PrometheusMiddleware):
        middleware = middleware.app  # type: ignore[union-attr]
    assert len(middleware._handlers) <= 3


async def test_other_scopes_pass_through_and_the_body_is_never_read() -> None:
    calls: list[str] = []

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        calls.append(scope["type"])
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"ok"})

    registry = CollectorRegistry()
    middleware = PrometheusMiddleware(inner, registry=registry, prefix="raw_")

    async def receive() -> dict[str, Any]:
        raise AssertionError("the middleware must not read the body")

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await middleware({"type": "lifespan"}, receive, send)
    scope = {"type": "http", "method": "POST", "path": "/raw", "root_path": "", "headers": [(b"content-length", b"5")]}
    await middleware(scope, receive, send)
    assert calls == ["lifespan", "http"]
    assert [message["type"] for message in sent] == ["http.response.start", "http.response.body"]
    text = generate_latest(registry).decode()
    # A plain ASGI app without routes: grouped as unmatched, sizes from the Content-Length headers.
    assert 'raw_http_requests_total{handler="none",method="POST",status="2xx"} 1.0' in text
    assert 'raw_http_request_size_bytes_sum{handler="none"} 5.0' in text
    assert 'raw_http_response_size_bytes_sum{handler="none"} 2.0' in text


FORKED = """
import asyncio, os
from c2casgiutils import prometheus
from prometheus_client import generate_latest

async def inner(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})

async def send(message):
    pass

middleware = prometheus.PrometheusMiddleware(inner)
scope = {"type": "http", "method": "GET", "path": "/x", "root_path": "", "headers": []}
asyncio.run(middleware(dict(scope), None, send))
child = os.fork()
if child == 0:  # the child's values go to a file of its own pid, not into the parent's
    asyncio.run(middleware(dict(scope), None, send))
    os._exit(0)
os.waitpid(child, 0)
asyncio.run(middleware(dict(scope), None, send))
print(sorted(name for name in os.listdir(os.environ["PROMETHEUS_MULTIPROC_DIR"]) if name.startswith("counter_http_")))
print([line for line in generate_latest(prometheus.build_registry()).decode().splitlines()
       if line.startswith("http_requests_total{")])
print(os.getpid(), child)
"""


def test_multiprocess_values_of_a_forked_worker_go_to_its_own_file(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("C2C__")}
    env.update({"PYTHONPATH": str(ROOT), "C2C__PROMETHEUS__PORT": "", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    result = subprocess.run(
        [sys.executable, "-c", FORKED], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    files, totals, pids = result.stdout.splitlines()
    parent, child = pids.split()
    assert files == str(sorted([f"counter_http_{parent}.db", f"counter_http_{child}.db"]))
    assert totals == str(['http_requests_total{handler="none",method="GET",status="2xx"} 3.0'])


def test_each_new_registry_gets_its_own_collectors() -> None:
    # Registries made and dropped one after another (one per test app) often reuse a freed id(): each must
    # still get collectors registered in itself, not those of a registry that is gone.
    import gc

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        pass

    for _ in range(50):
        registry = CollectorRegistry()
        PrometheusMiddleware(inner, registry=registry, prefix="fresh_")
        exposition = generate_latest(registry).decode()
        assert "fresh_http_requests_inprogress" in exposition
        assert "fresh_http_request_duration_seconds" in exposition
        del registry
        gc.collect()
