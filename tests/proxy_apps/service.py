"""A service wired as the specification's "Add in your application" section, to run behind a real proxy.

Run by uvicorn in the tests (``uvicorn tests.proxy_apps.service:app --no-proxy-headers``); every setting of
the forwarded headers (``C2C__PROXY_HEADERS__TYPE``, ``__TRUSTED_HOSTS``, ``__FIELDS``, ``__HOPS``) comes
from the ``C2C__*`` environment of the process, read by the middleware exactly as the demo does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request

import c2casgiutils
from c2casgiutils import config, headers


@asynccontextmanager
async def _lifespan(main_app: FastAPI) -> AsyncIterator[None]:
    await c2casgiutils.startup(main_app)
    yield
    await c2casgiutils.shutdown(main_app)


app = FastAPI(title="proxy test service", lifespan=_lifespan)
app.mount("/c2c", c2casgiutils.app)

app.add_middleware(
    headers.ArmorHeaderMiddleware,
    headers_config={
        "http": {"headers": {"Strict-Transport-Security": None} if config.settings.http else {}},
    },
)
if config.settings.proxy_headers.type != "none":
    app.add_middleware(
        headers.ForwardedHeadersMiddleware,
        trusted_hosts=config.settings.proxy_headers.trusted_hosts,
        headers_type=config.settings.proxy_headers.type,
    )


@app.get("/where", name="where")
async def where(request: Request) -> dict[str, Any]:
    """What the application derives from the request: the URL it builds for itself, and who asks."""
    return {
        "url_for": str(request.url_for("where")),
        "url": str(request.url),
        "scheme": request.url.scheme,
        "root_path": request.scope.get("root_path", ""),
        "client": request.client.host if request.client else None,
        "host_header": request.headers.get("host"),
    }
