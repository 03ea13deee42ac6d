"""The /c2c sub-app and the start-up / shut-down of what the package opens."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from c2casgiutils import auth, broadcast, config, health_checks, logs, redis_utils, tracing
from c2casgiutils._mount import MountPathMiddleware
from c2casgiutils._version import __version__
from c2casgiutils.tools import debug as tools_debug
from c2casgiutils.tools import headers as tools_headers
from c2casgiutils.tools import index as tools_index
from c2casgiutils.tools import logging as tools_logging
from c2casgiutils.tools import versions as tools_versions

_LOGGER = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).parent / "static"


def create_app() -> FastAPI:
    """Build the sub-app that services mount at ``/c2c``; routes live under ``settings.route_prefix``."""
    prefix = config.settings.route_prefix.rstrip("/")
    sub_app = FastAPI(
        title="c2casgiutils",
        version=__version__,
        description="Operations tools: health checks, logging levels, admin page",
        docs_url=f"{prefix}/docs",
        redoc_url=f"{prefix}/redoc",
        openapi_url=f"{prefix}/openapi.json",
        **tracing.mounted_app_options(),  # the request's server span is the one of the app it is mounted in
    )
    sub_app.include_router(health_checks.router, prefix=prefix, tags=["c2c_health_checks"])
    sub_app.include_router(auth.router, prefix=f"{prefix}/auth", tags=["c2c_auth"])
    sub_app.include_router(tools_logging.router, prefix=prefix, tags=["c2c_tools"])
    sub_app.include_router(tools_headers.router, prefix=prefix, tags=["c2c_tools"])
    sub_app.include_router(tools_debug.router, prefix=prefix, tags=["c2c_tools"])
    sub_app.include_router(tools_versions.router, prefix=prefix, tags=["c2c_tools"])
    sub_app.include_router(tools_index.router, prefix=prefix, tags=["c2c_tools"])
    sub_app.mount(f"{prefix}/static", StaticFiles(directory=STATIC_DIR), name="c2c_static")
    sub_app.add_middleware(MountPathMiddleware)
    return sub_app


app = create_app()


async def startup(main_app: FastAPI | None = None) -> None:
    """Start what the package needs: settings checks, span export, broadcast listener, logging overrides.

    Call it from the service's lifespan (in each worker); :func:`shutdown` closes what it opened.
    """
    del main_app  # kept for the documented signature; nothing is attached to the main app
    auth.check_settings()
    logs.mask_access_log_secrets()
    tracing.start_export()  # with the otel extra and OTEL_EXPORTER_OTLP_ENDPOINT set; nothing otherwise
    await broadcast.startup()
    await tools_logging.startup()
    await tools_debug.startup()
    await tools_versions.startup()
    _LOGGER.debug("c2casgiutils started")


async def shutdown(main_app: FastAPI | None = None) -> None:
    """Stop the broadcast listener, close the Redis connections opened by :func:`startup`, send the last spans."""
    del main_app
    await broadcast.shutdown()
    await redis_utils.cleanup()
    await tracing.stop_export()


@asynccontextmanager
async def lifespan(main_app: FastAPI) -> AsyncIterator[None]:
    """A lifespan that runs :func:`startup` and :func:`shutdown`, for services with nothing else to do."""
    await startup(main_app)
    try:
        yield
    finally:
        await shutdown(main_app)
