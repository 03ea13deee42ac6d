"""The /c2c sub-app and the start-up / shut-down of what the package opens."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles

from c2casgiutils import (
    auth,
    broadcast,
    config,
    health_checks,
    lifecycle,
    log_levels,
    logs,
    prometheus,
    redis_utils,
    tracing,
)
from c2casgiutils._head import HeadAsGetMiddleware
from c2casgiutils._mount import MountPathMiddleware
from c2casgiutils._version import __version__
from c2casgiutils.lifecycle._drain import PROCESS as _PROCESS_AVAILABILITY
from c2casgiutils.tools import debug as tools_debug
from c2casgiutils.tools import headers as tools_headers
from c2casgiutils.tools import index as tools_index
from c2casgiutils.tools import log_levels as tools_log_levels
from c2casgiutils.tools import versions as tools_versions

_LOGGER = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).parent / "static"


ROUTERS: tuple[tuple[APIRouter, str, str], ...] = (
    (health_checks.router, "", "c2c_health_checks"),
    (auth.router, "/auth", "c2c_auth"),
    (tools_log_levels.router, "", "c2c_tools"),
    (tools_headers.router, "", "c2c_tools"),
    (tools_debug.router, "", "c2c_tools"),
    (tools_versions.router, "", "c2c_tools"),
    (tools_index.router, "", "c2c_tools"),
)
"""The routers of the sub-app: (router, path under the route prefix, OpenAPI tag)."""


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
    for router, path, tag in ROUTERS:
        sub_app.include_router(router, prefix=prefix + path, tags=[tag])
    sub_app.mount(f"{prefix}/static", StaticFiles(directory=STATIC_DIR), name="c2c_static")
    sub_app.add_middleware(HeadAsGetMiddleware)
    sub_app.add_middleware(MountPathMiddleware)
    return sub_app


app = create_app()


async def startup(main_app: FastAPI | None = None) -> None:
    """Start what the package needs: settings checks, span export, broadcast listener, logging overrides.

    Call it from the service's lifespan (in each worker); :func:`shutdown` closes what it opened.
    """
    del main_app  # kept for the documented signature; nothing is attached to the main app
    _begin_availability()
    auth.check_settings()
    logs.mask_access_log_secrets()
    logs.skip_access_log_paths(config.settings.access_log.skip_paths)
    tracing.start_export()  # with the otel extra and OTEL_EXPORTER_OTLP_ENDPOINT set; nothing otherwise
    await broadcast.startup()
    await log_levels.startup()
    await tools_debug.startup()
    await tools_versions.startup()
    _PROCESS_AVAILABILITY.started()
    _LOGGER.debug("c2casgiutils started")


def _begin_availability() -> None:
    """This process is ``starting``, drains on SIGTERM, and the built-in probes are registered."""
    shutdown_settings = config.settings.shutdown
    directory = shutdown_settings.availability_dir or prometheus.multiproc_dir()
    _PROCESS_AVAILABILITY.begin(shutdown_settings.drain_delay.total_seconds(), directory)
    health_checks.FACTORY.add(_READINESS)
    health_checks.FACTORY.add(_LIVENESS)


_READINESS = lifecycle.ReadinessState()
_LIVENESS = lifecycle.LivenessState()


async def shutdown(main_app: FastAPI | None = None) -> None:
    """Stop the broadcast listener, close the Redis connections opened by :func:`startup`, leave the instance.

    The queued spans are sent; the built-in probes registered by :func:`startup` are removed.
    """
    del main_app
    await broadcast.shutdown()
    await redis_utils.cleanup()
    await tracing.stop_export()
    _PROCESS_AVAILABILITY.end()
    health_checks.FACTORY.remove(_READINESS)
    health_checks.FACTORY.remove(_LIVENESS)


@asynccontextmanager
async def lifespan(main_app: FastAPI) -> AsyncIterator[None]:
    """A lifespan that runs :func:`startup` and :func:`shutdown`, for services with nothing else to do."""
    await startup(main_app)
    try:
        yield
    finally:
        await shutdown(main_app)
