"""Accept both mount conventions for the /c2c sub-app.

Starlette >= 0.35 (FastAPI's ``mount``) keeps the full path in ``scope["path"]`` and the mount point in
``scope["root_path"]``; older routers and some frameworks (responder's ``api.mount``, WSGI-style dispatchers)
strip the mount point from ``path``. Starlette's routing and ``StaticFiles`` expect the first convention, so
the second one is brought back to it here.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


class MountPathMiddleware:
    """Put the mount point back in front of ``path`` when the caller has stripped it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            root = scope.get("root_path", "").rstrip("/")
            path: str = scope["path"]
            if root and path != root and not path.startswith(root + "/"):
                scope = dict(scope)
                scope["path"] = root + path
                raw_path = scope.get("raw_path")
                if raw_path is not None:
                    scope["raw_path"] = root.encode("latin-1") + raw_path
        await self.app(scope, receive, send)
