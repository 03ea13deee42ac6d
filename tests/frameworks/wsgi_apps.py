"""WSGI applications (chocs, seed 004, and Flask) served through a2wsgi behind our middlewares, /c2c next to them."""

from __future__ import annotations

import hashlib
import http
import json
from collections.abc import Callable, Iterable
from typing import Any

import chocs
import flask
from a2wsgi import WSGIMiddleware

import c2casgiutils
from c2casgiutils import headers
from tests.frameworks.checks import PAGE_HEADERS_CONFIG, page_html
from tests.frameworks.dispatch import PathDispatcher
from tests.frameworks.lifecycle import c2c_lifespan

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def create_chocs_wsgi() -> WSGIApp:
    app = chocs.Application()

    @app.get("/hello")
    def hello(request: chocs.HttpRequest) -> chocs.HttpResponse:
        payload = {"message": "hello from chocs", "host": request.headers.get("host")}
        # chocs' own clickjacking header, in another case than ours: it must be replaced, not duplicated.
        return chocs.HttpResponse(
            json.dumps(payload), headers={"Content-Type": "application/json", "X-Frame-Options": "SAMEORIGIN"}
        )

    @app.post("/echo")
    def echo(request: chocs.HttpRequest) -> chocs.HttpResponse:
        body = request.body.getvalue()
        payload = {"sha256": hashlib.sha256(body).hexdigest(), "length": len(body)}
        return chocs.HttpResponse(json.dumps(payload), headers={"Content-Type": "application/json"})

    return with_reason_phrase(chocs.create_wsgi_handler(app))


def with_reason_phrase(wsgi_app: WSGIApp) -> WSGIApp:
    """chocs 1.6 calls ``start_response("200", ...)``; PEP 3333 requires ``"200 OK"`` and a2wsgi relies on it."""

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        def start(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if status.isdigit():
                try:
                    status = f"{status} {http.HTTPStatus(int(status)).phrase}"
                except ValueError:
                    status = f"{status} Unknown"
            return start_response(status, response_headers, exc_info)

        return wsgi_app(environ, start)

    return application


def create_flask_wsgi() -> flask.Flask:
    app = flask.Flask("frameworks_flask")

    @app.get("/hello")
    def hello() -> Any:
        request = flask.request
        return {
            "url": request.url,
            "external": flask.url_for("hello", _external=True),
            "scheme": request.scheme,
            "script_root": request.script_root,
            "remote_addr": request.remote_addr,
        }

    @app.get("/page")
    def page() -> Any:
        # a2wsgi passes the ASGI scope in the environ: request.state of Starlette is scope["state"].
        nonce = flask.request.environ["asgi.scope"]["state"]["nonce"]
        return flask.Response(page_html(nonce), content_type="text/html; charset=utf-8")

    @app.post("/echo")
    def echo() -> Any:
        body = flask.request.get_data()
        return {"sha256": hashlib.sha256(body).hexdigest(), "length": len(body)}

    return app


def create_asgi_app(wsgi_app: WSGIApp, name: str) -> Any:
    """The WSGI app through a2wsgi, /c2c next to it, our middlewares around both."""
    application: Any = PathDispatcher(
        WSGIMiddleware(wsgi_app),  # type: ignore[arg-type]
        {"/c2c": c2casgiutils.app},
        lifespan=c2c_lifespan(name),
    )
    application = headers.ArmorHeaderMiddleware(application, headers_config=PAGE_HEADERS_CONFIG)
    return headers.ForwardedHeadersMiddleware(
        application, trusted_hosts=["127.0.0.1"], fields="for,proto,host,port,prefix"
    )
