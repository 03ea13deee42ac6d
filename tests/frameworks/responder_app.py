"""A responder API with c2casgiutils: /c2c mounted with api.mount, our middlewares with api.add_middleware."""

from __future__ import annotations

import hashlib

import responder

import c2casgiutils
from c2casgiutils import headers
from tests.frameworks.checks import PAGE_HEADERS_CONFIG, page_html
from tests.frameworks.lifecycle import c2c_lifespan


def create_api() -> responder.API:
    api = responder.API(static_dir=None, sessions=False, lifespan=c2c_lifespan("responder"))

    @api.route("/hello")
    async def hello(req: responder.Request, resp: responder.Response) -> None:
        resp.text = "hello from responder"

    @api.route("/url")
    async def url(req: responder.Request, resp: responder.Response) -> None:
        resp.media = {
            "url": req.full_url,
            "scheme": req.url.scheme,
            "netloc": req.url.netloc,
            "client": req.client.host,
        }

    @api.route("/page")
    async def page(req: responder.Request, resp: responder.Response) -> None:
        resp.html = page_html(req.state.nonce)

    @api.route("/echo", methods=["POST"])
    async def echo(req: responder.Request, resp: responder.Response) -> None:
        body = await req.content
        resp.media = {"sha256": hashlib.sha256(body).hexdigest(), "length": len(body)}

    api.mount("/c2c", c2casgiutils.app)
    # The last added middleware is the outermost: forwarded headers are applied before the security headers
    # are chosen (HSTS depends on the forwarded host).
    api.add_middleware(headers.ArmorHeaderMiddleware, headers_config=PAGE_HEADERS_CONFIG)
    api.add_middleware(headers.ForwardedHeadersMiddleware, trusted_hosts=["127.0.0.1"])
    return api
