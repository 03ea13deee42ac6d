"""The {{ cookiecutter.project_slug }} application: FastAPI with the c2casgiutils operations stack.

Run it with ``uvicorn {{ cookiecutter.project_slug }}.main:app``. Health checks are served at ``/c2c/health_checks``,
metrics on ``C2C__PROMETHEUS__PORT`` (9000), the admin tools at ``/c2c``. Spans go to the OTLP collector of
``OTEL_EXPORTER_OTLP_ENDPOINT`` when it is set (Tempo, Jaeger or any OpenTelemetry collector).
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import c2casgiutils
from c2casgiutils import config, errors, headers, health_checks, lifecycle, prometheus, request_id, sentry, tracing
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.middleware.trustedhost import TrustedHostMiddleware

from {{ cookiecutter.project_slug }} import api, checks{% if cookiecutter.database %}, db{% endif %}
from {{ cookiecutter.project_slug }}.config import settings

_LOGGER = logging.getLogger(__name__)

# First, so that Sentry sees everything that follows (does nothing without C2C__SENTRY__DSN or SENTRY_DSN).
sentry.init()


@asynccontextmanager
async def _lifespan(main_app: FastAPI) -> AsyncIterator[None]:
    """Start the metrics server and c2casgiutils (span export, broadcast, logging levels); close them on shutdown."""
    _LOGGER.info("Starting {{ cookiecutter.project_slug }}")
    # With several workers, whichever gets the port serves the metrics of all (multiprocess mode).
    prometheus.start_metrics_server()
    await c2casgiutils.startup(main_app)
    await api.subscribe_broadcasts(main_app)
    try:
        yield
    finally:
        await c2casgiutils.shutdown(main_app)
{%- if cookiecutter.database %}
        await db.engine.dispose()
{%- endif %}
        prometheus.stop_metrics_server()


def _add_health_checks() -> None:
    """Readiness: every dependency; liveness: the process only, so an outage does not restart it.

    c2casgiutils.startup() adds ReadinessState (503 while starting or draining) and LivenessState.
    """
    health_checks.FACTORY.add(checks.Liveness(tags=["liveness", "readiness", "all"]))
{%- if cookiecutter.redis %}
    # Without C2C__REDIS__URL (or Sentinel) the service runs alone, with local broadcast.
    if config.settings.redis.url or config.settings.redis.sentinels:
        health_checks.FACTORY.add(health_checks.Redis(tags=["readiness", "redis", "all"]))
{%- endif %}
{%- if cookiecutter.database %}
    health_checks.FACTORY.add(health_checks.SQLAlchemy(Session=db.Session, tags=["readiness", "database", "all"]))
    health_checks.FACTORY.add(
        health_checks.Alembic(
            Session=db.Session,
            config_file=settings.database.alembic_config,
            tags=["readiness", "database", "migrations", "all"],
        )
    )
{%- endif %}


def _add_middlewares(main_app: FastAPI) -> None:
    """Add the middlewares; the last added is the outermost, so it sees the request first."""
    # Errors as application/problem+json with the request and trace ids: unhandled ones (500, logged with the
    # traceback), HTTPException and validation errors (422).
    errors.install_error_handlers(main_app, client_errors=True)
    # Request metrics (http_requests_total, durations, sizes, in progress) with the instrumentator's names.
    main_app.add_middleware(prometheus.PrometheusMiddleware)
    main_app.add_middleware(GZipMiddleware, minimum_size=1000)
    if settings.cors.allow_origins:
        main_app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors.allow_origins,
            allow_credentials=settings.cors.allow_credentials,
            allow_methods=settings.cors.allow_methods,
            allow_headers=settings.cors.allow_headers,
        )
    # Security headers; Strict-Transport-Security is dropped when the service is served over plain HTTP.
    main_app.add_middleware(
        headers.ArmorHeaderMiddleware,
        headers_config={"http": {"headers": {"Strict-Transport-Security": None} if config.settings.http else {}}},
    )
    if "*" not in settings.allowed_hosts:
        main_app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.allowed_hosts)
    # While the process drains after SIGTERM (C2C__SHUTDOWN__DRAIN_DELAY), answers close their connection so
    # that keep-alive clients reconnect to another replica.
    main_app.add_middleware(lifecycle.DrainMiddleware)
    # Host and scheme from the proxy's headers, before anything reads them.
    if config.settings.proxy_headers.type != "none":
        main_app.add_middleware(
            headers.ForwardedHeadersMiddleware,
            trusted_hosts=config.settings.proxy_headers.trusted_hosts,
            headers_type=config.settings.proxy_headers.type,
            fields=config.settings.proxy_headers.fields,  # only what the proxy sets: see README
            hops=config.settings.proxy_headers.hops,
        )
    # Request id and W3C trace context (traceparent) for every log line, error and call to another service; outermost,
    # so that C2C__TRACING__TRUST_INBOUND=trusted_proxies checks the proxy itself, not the client it forwards.
    main_app.add_middleware(request_id.RequestIdMiddleware)


app = FastAPI(
    title="{{ cookiecutter.project_slug }}",
    description="{{ cookiecutter.project_description }}",
    lifespan=_lifespan,
    **tracing.fastapi_options(),  # FastAPI's own spans follow C2C__TRACING__TRUST_INBOUND too
)
app.mount("/c2c", c2casgiutils.app)
app.include_router(api.router)
_add_middlewares(app)
_add_health_checks()
