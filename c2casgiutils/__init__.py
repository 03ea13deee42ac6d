"""c2casgiutils: the operations toolkit for FastAPI/ASGI services.

Mount :data:`app` at ``/c2c`` and call :func:`startup` from the service's lifespan.
"""

from c2casgiutils import (
    auth,
    broadcast,
    cli,
    config,
    headers,
    health_checks,
    lifecycle,
    prometheus,
    redis_utils,
    sentry,
    tools,
    tracing,
)
from c2casgiutils._app import app, create_app, lifespan, shutdown, startup
from c2casgiutils._optional import MissingExtraError
from c2casgiutils._version import __version__

# prometheus_client reads its multiprocess directory when first imported: export it early.
prometheus.setup_multiprocess()

__all__ = [
    "MissingExtraError",
    "__version__",
    "app",
    "auth",
    "broadcast",
    "cli",
    "config",
    "create_app",
    "headers",
    "health_checks",
    "lifecycle",
    "lifespan",
    "prometheus",
    "redis_utils",
    "sentry",
    "shutdown",
    "startup",
    "tools",
    "tracing",
]
