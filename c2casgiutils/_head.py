"""HEAD wherever the /c2c sub-app serves GET (RFC 9110 §9.3.2), including its static files and API docs."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


class HeadAsGetMiddleware:
    """Serve a HEAD request as the GET of the same URL.

    FastAPI's routes answer only the methods they declare: a HEAD to a GET route would be a 405, and uptime
    checkers use HEAD. Here the request goes on as a GET, so HEAD gets the status and header fields of GET from
    the same code. The body is left to the server, which never sends one in answer to a HEAD (uvicorn,
    Hypercorn, Daphne and Granian drop it; Starlette's own routes rely on that): a middleware around the sub-app
    that rewrites bodies (GZip) then gives HEAD the same Content-Length and Content-Encoding as GET.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "HEAD":
            scope = {**scope, "method": "GET"}
        await self.app(scope, receive, send)
