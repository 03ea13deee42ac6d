"""A small ASGI path dispatcher: ``/c2c`` (or any prefix) to one app, everything else to the framework's app.

Frameworks without a mount of their own (Django, shallot, a WSGI app behind a2wsgi) put ``c2casgiutils.app``
next to their application with it. It follows the ASGI convention that uvicorn and Starlette use: ``path``
contains ``root_path``; the mounted app gets ``root_path + prefix`` as its ``root_path`` and the same ``path``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager

from starlette.types import ASGIApp, Receive, Scope, Send

LifespanFactory = Callable[[], AbstractAsyncContextManager[None]]


class PathDispatcher:
    """Send requests under a mount prefix to its app, the others to ``default``.

    ``lifespan``: a context manager factory run on the ASGI lifespan events (e.g. one that calls
    ``c2casgiutils.startup`` / ``shutdown``), for a default app that does not speak the lifespan
    protocol (Django). Without it the lifespan events go to ``default``.
    """

    def __init__(
        self, default: ASGIApp, mounts: Mapping[str, ASGIApp], lifespan: LifespanFactory | None = None
    ) -> None:
        for prefix in mounts:
            if not prefix.startswith("/") or prefix.endswith("/"):
                raise ValueError(f"mount prefix: expected '/name' (no trailing slash), got {prefix!r}")
        self.default = default
        # Longest prefix first, so /c2c/x wins over /c2c.
        self.mounts = sorted(mounts.items(), key=lambda item: len(item[0]), reverse=True)
        self.lifespan = lifespan

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            if self.lifespan is None:
                await self.default(scope, receive, send)
            else:
                await self._run_lifespan(receive, send)
            return
        root_path: str = scope.get("root_path", "")
        path: str = scope["path"]
        relative = path[len(root_path) :] if root_path and path.startswith(root_path) else path
        for prefix, app in self.mounts:
            if relative == prefix or relative.startswith(prefix + "/"):
                child = dict(scope)
                child["root_path"] = root_path + prefix
                await app(child, receive, send)
                return
        await self.default(scope, receive, send)

    async def _run_lifespan(self, receive: Receive, send: Send) -> None:
        assert self.lifespan is not None
        message = await receive()
        if message["type"] != "lifespan.startup":
            return
        stack = contextlib.AsyncExitStack()
        try:
            await stack.enter_async_context(self.lifespan())
        except Exception as error:
            await send({"type": "lifespan.startup.failed", "message": f"{type(error).__name__}: {error}"})
            return
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        try:
            await stack.aclose()
        except Exception as error:
            await send({"type": "lifespan.shutdown.failed", "message": f"{type(error).__name__}: {error}"})
            return
        await send({"type": "lifespan.shutdown.complete"})
