"""route_templates: the template read from the router's match equals the route walk's, on a table of applications.

Each application is served through Starlette's TestClient with a probe middleware that asks
``RouteTemplates`` for the template of every request (HTTP and WebSocket) and keeps the scope as it was
before the application ran, so the reference walk (:func:`route_templates.walk`, the rule of
prometheus-fastapi-instrumentator's defaults) can be asked the same question. The only intended difference:
a request that the router answers with a slash redirect gets the template of the route it is sent to.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import APIRouter, FastAPI, WebSocket
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Host, Mount, Route, Router, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

import c2casgiutils
from c2casgiutils import route_templates
from c2casgiutils.prometheus import PrometheusMiddleware
from c2casgiutils.route_templates import RouteTemplates, walk


class Probe:
    """Asks RouteTemplates for the template of each request; keeps the scope as it was before routing."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.templates = RouteTemplates(app)
        self.noted_templates = RouteTemplates(app)  # the same through noted(): a plain tuple instead of Started
        self.seen: list[tuple[dict[str, Any], int | None, str | None]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        before = dict(scope)
        started = self.templates.start(scope)
        noted = self.noted_templates.noted(scope)
        assert noted == tuple(started)
        status = None

        async def watch(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            template = self.templates.template(scope, started, status)
            # A state of its own: the template the first call memoised there would be read back, not computed.
            assert self.noted_templates.template({**scope, "state": {}}, noted, status) == template
            self.seen.append((before, status, template))


class CopyScope:
    """A middleware that hands a copy of the scope on: the router's match never reaches the outer scope."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(dict(scope), receive, send)


async def _text(request: Request) -> Response:
    return PlainTextResponse(request.url.path)


async def _raw_app(scope: Any, receive: Any, send: Any) -> None:
    """A mounted ASGI application without routes."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"raw"})


async def _echo_socket(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(websocket.url.path)
    await websocket.close()


def _fastapi_app() -> FastAPI:
    app = FastAPI()
    app.mount("/c2c", c2casgiutils.app)
    api = APIRouter(prefix="/api")

    @api.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item": item_id}

    @api.post("/items")
    async def create() -> dict[str, str]:
        return {"created": "yes"}

    @api.get("")
    async def api_root() -> dict[str, str]:
        return {"api": "root"}

    @api.get("/folder/")
    async def folder() -> dict[str, str]:
        return {"folder": "yes"}

    api.add_api_websocket_route("/ws/{room}", _echo_socket)
    nested = APIRouter(prefix="/v1")

    @nested.get("/users/{user_id}/orders/{order_id}")
    async def order(user_id: int, order_id: int) -> dict[str, int]:
        return {"user": user_id, "order": order_id}

    api.include_router(nested)
    app.include_router(api)
    shared = APIRouter()

    @shared.get("/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str]:
        return {"thing": thing_id}

    # One router included twice: the same route objects (in some FastAPI versions) under two prefixes.
    app.include_router(shared, prefix="/one")
    app.include_router(shared, prefix="/two")

    @app.get("/hello")
    @app.get("/hi")  # one endpoint on two paths
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    app.add_route("/plain/{name}", _text)
    app.add_api_websocket_route("/ws", _echo_socket)
    app.mount("/raw", _raw_app)
    starlette_sub = Starlette(
        routes=[
            Mount("/users/{user_id}", routes=[Route("/files/{file_id}", _text), Route("/", _text)]),
            Route("/about", _text),
            WebSocketRoute("/socket", _echo_socket),
        ]
    )
    app.mount("/sub", starlette_sub)
    return app


def _starlette_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/", _text),
            Route("/pages/{page:int}", _text, methods=["GET", "POST"]),
            Route("/pages/{slug}", _text),
            Route("/trailing/", _text),
            Mount("/static", app=_raw_app),
            Mount("/admin", routes=[Route("/users/{user_id}", _text), Mount("/deep", routes=[Route("/x", _text)])]),
            Host("api.example.com", app=Router(routes=[Route("/host-only", _text)])),
            WebSocketRoute("/ws/{name}", _echo_socket),
            Route("/{anything:path}/edit", _text),
        ]
    )


def _no_redirects_app() -> FastAPI:
    app = FastAPI(redirect_slashes=False)

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item": item_id}

    return app


HTTP_REQUESTS: dict[str, list[tuple[str, str]]] = {
    "fastapi": [
        ("GET", "/hello"),
        ("GET", "/hi"),
        # A parameterless template is checked by string equality; a path its regex also matches (``$`` allows a
        # final newline) takes the regex of the slow path: both give the route.
        ("GET", "/hello%0A"),
        ("DELETE", "/hello"),  # path matches, method does not: 405, labelled with the route
        ("GET", "/api/items/1"),
        ("GET", "/api/items/2"),
        ("POST", "/api/items"),
        ("GET", "/api/items"),  # 405
        ("GET", "/api"),
        ("GET", "/api/"),  # slash redirect to /api
        ("GET", "/api/folder/"),
        ("GET", "/api/folder"),  # slash redirect to /api/folder/
        ("GET", "/api/items/3/"),  # slash redirect to /api/items/{item_id}
        ("GET", "/api/v1/users/7/orders/8"),
        ("GET", "/one/things/a"),
        ("GET", "/two/things/b"),
        ("GET", "/plain/someone"),
        ("GET", "/c2c/health_checks"),
        ("GET", "/c2c/health_checks/"),  # slash redirect inside the mount
        ("GET", "/c2c/nowhere"),  # 404 inside the mount
        ("GET", "/c2c"),  # slash redirect to the mount
        ("GET", "/raw/anything/below"),
        ("GET", "/sub/users/5/files/6"),
        ("GET", "/sub/users/5/"),
        ("GET", "/sub/about"),
        ("GET", "/sub/missing"),
        ("GET", "/nowhere"),  # 404
        ("GET", "/nowhere/"),
        ("GET", "/"),
    ],
    "starlette": [
        ("GET", "/"),
        ("GET", "/pages/3"),
        ("POST", "/pages/3"),
        ("POST", "/pages/abc"),  # 405 on the second route
        ("GET", "/pages/abc"),
        ("GET", "/trailing"),  # slash redirect
        ("GET", "/static/app.js"),
        ("GET", "/admin/users/1"),
        ("GET", "/admin/deep/x"),
        ("GET", "/admin/deep/y"),  # 404 two mounts deep
        ("GET", "/admin/nothing"),
        ("GET", "/host-only"),  # the Host route is not for this host
        ("GET", "/some/where/edit"),
        ("GET", "/missing"),
    ],
    "no_redirects": [("GET", "/items/1"), ("GET", "/items/1/"), ("GET", "/items")],
}
WEBSOCKETS: dict[str, list[str]] = {
    "fastapi": ["/ws", "/api/ws/lobby", "/sub/socket"],
    "starlette": ["/ws/alice"],
    "no_redirects": [],
}
BUILDERS = {"fastapi": _fastapi_app, "starlette": _starlette_app, "no_redirects": _no_redirects_app}


def _expected(app: Any, before: dict[str, Any], status: int | None) -> str | None:
    """The walk's template; for a slash redirect of the router, the walk's template of the target."""
    expected = walk(before, app.routes)
    if expected is None and status == 307 and getattr(app.router, "redirect_slashes", False):
        path = before["path"]
        expected = walk({**before, "path": path.rstrip("/") if path.endswith("/") else path + "/"}, app.routes)
    return expected


def _serve(app: Any, name: str, probe_getter: Any) -> list[tuple[dict[str, Any], int | None, str | None]]:
    with TestClient(app, follow_redirects=False) as client:
        for method, path in HTTP_REQUESTS[name]:
            client.request(method, path)
        for path in WEBSOCKETS[name]:
            with client.websocket_connect(path) as socket:
                assert socket.receive_text() == path
    return list(probe_getter().seen)


def _probe_of(app: Any) -> Probe:
    layer = app.middleware_stack
    while not isinstance(layer, Probe):
        layer = layer.app
    return layer


@pytest.mark.parametrize("name", sorted(BUILDERS))
@pytest.mark.parametrize("copied", [False, True], ids=["router-match", "scope-copied"])
def test_templates_equal_the_walk(name: str, copied: bool) -> None:
    """The router's match (or, when a middleware copied the scope, the pruned walk) gives the walk's templates."""
    app = BUILDERS[name]()
    if copied:
        app.add_middleware(CopyScope)
    app.add_middleware(Probe)
    seen = _serve(app, name, lambda: _probe_of(app))
    assert len(seen) == len(HTTP_REQUESTS[name]) + len(WEBSOCKETS[name])
    for before, status, template in seen:
        assert template == _expected(app, before, status), (before["type"], before.get("method"), before["path"])


def test_known_templates() -> None:
    app = _fastapi_app()
    app.add_middleware(Probe)
    seen = _serve(app, "fastapi", lambda: _probe_of(app))
    found = {(before.get("method"), before["path"]): (status, template) for before, status, template in seen}
    assert found[("GET", "/api/items/1")] == (200, "/api/items/{item_id}")
    assert found[("GET", "/api/items/3/")] == (307, "/api/items/{item_id}")
    assert found[("GET", "/api/")] == (307, "/api")
    assert found[("GET", "/api/folder")] == (307, "/api/folder/")
    assert found[("DELETE", "/hello")] == (405, "/hello")
    assert found[("GET", "/api/v1/users/7/orders/8")] == (200, "/api/v1/users/{user_id}/orders/{order_id}")
    assert found[("GET", "/one/things/a")] == (200, "/one/things/{thing_id}")
    assert found[("GET", "/two/things/b")] == (200, "/two/things/{thing_id}")
    assert found[("GET", "/hi")] == (200, "/hi")
    assert found[("GET", "/hello")] == found[("GET", "/hello\n")] == (200, "/hello")
    assert found[("GET", "/c2c/health_checks")] == (200, "/c2c/health_checks")
    assert found[("GET", "/c2c/nowhere")] == (404, None)
    assert found[("GET", "/raw/anything/below")] == (200, "/raw")
    assert found[("GET", "/sub/users/5/files/6")] == (200, "/sub/users/{user_id}/files/{file_id}")
    assert found[("GET", "/nowhere")] == (404, None)
    assert found[(None, "/api/ws/lobby")] == (None, "/api/ws/{room}")
    assert found[(None, "/sub/socket")] == (None, "/sub/socket")


def test_routes_added_later_are_found() -> None:
    app = FastAPI()

    @app.get("/first/{item_id}")
    async def first(item_id: int) -> dict[str, int]:
        return {"item": item_id}

    app.add_middleware(Probe)
    with TestClient(app) as client:
        client.get("/first/1")
        late = APIRouter(prefix="/late")

        @late.get("/{item_id}")
        async def later(item_id: int) -> dict[str, int]:
            return {"item": item_id}

        app.include_router(late)
        client.get("/late/2")
        client.get("/first/3")
    templates = [template for _, _, template in _probe_of(app).seen]
    assert templates == ["/first/{item_id}", "/late/{item_id}", "/first/{item_id}"]


def test_a_sub_application_instrumented_itself_gets_its_own_templates() -> None:
    """Inside a mounted application the templates are relative to it, as the walk of its own routes gives."""
    sub = FastAPI()

    @sub.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item": item_id}

    sub.add_middleware(Probe)
    app = FastAPI()
    app.mount("/sub", sub)
    outer = Probe(app)
    with TestClient(outer) as client:
        client.get("/sub/items/1")
        client.get("/sub/nothing")
    assert [template for _, _, template in _probe_of(sub).seen] == ["/items/{item_id}", None]
    assert [template for _, _, template in outer.seen] == ["/sub/items/{item_id}", None]


def test_unique_paths_leave_memory_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Routed requests never fill the walk cache; 404s inside a mount fill it up to its bound only."""
    monkeypatch.setattr(route_templates, "PATH_CACHE_SIZE", 50)
    app = _fastapi_app()
    app.add_middleware(Probe)
    with TestClient(app) as client:
        for index in range(300):
            client.get(f"/api/items/{index}")
        probe = _probe_of(app)
        assert len(probe.templates.walked) == 0
        for index in range(300):
            client.get(f"/c2c/missing{index}")
    assert len(probe.templates.walked) == 50
    assert [template for _, _, template in probe.seen[:300]] == ["/api/items/{item_id}"] * 300
    assert {template for _, _, template in probe.seen[300:]} == {None}


def test_the_metrics_label_is_the_template_and_computed_once() -> None:
    """PrometheusMiddleware's handler label is the same template; an outer probe reads it from the state."""
    app = _fastapi_app()
    registry = CollectorRegistry()
    app.add_middleware(PrometheusMiddleware, registry=registry)
    app.add_middleware(Probe)
    with TestClient(app, follow_redirects=False) as client:
        client.get("/api/items/1")
        client.get("/api/items/3/")
        client.get("/nowhere")
    total = "http_requests_total"
    assert registry.get_sample_value(total, {"handler": "/api/items/{item_id}", "method": "GET", "status": "2xx"}) == 1
    assert registry.get_sample_value(total, {"handler": "/api/items/{item_id}", "method": "GET", "status": "3xx"}) == 1
    assert registry.get_sample_value(total, {"handler": "none", "method": "GET", "status": "4xx"}) == 1
    probe = _probe_of(app)
    assert [template for _, _, template in probe.seen] == ["/api/items/{item_id}", "/api/items/{item_id}", None]
    # Computed by the metrics middleware (inside), read by the probe from the request's state.
    assert probe.templates.walked == {}


def test_a_websocket_is_not_counted_by_the_metrics() -> None:
    app = _fastapi_app()
    registry = CollectorRegistry()
    app.add_middleware(PrometheusMiddleware, registry=registry)
    with TestClient(app) as client, client.websocket_connect("/ws") as socket:
        assert socket.receive_text() == "/ws"
        with pytest.raises(WebSocketDisconnect):
            socket.receive_text()
    assert registry.get_sample_value("http_request_duration_highr_seconds_count") in (None, 0.0)
