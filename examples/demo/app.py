"""Demo service: c2casgiutils wired exactly as the specification's "Add in your application" section.

On embedded defaults it needs no external service: SQLite (aiosqlite) for the database checks and the
in-process broadcast backend. With ``C2C__REDIS__URL`` set it uses that Redis. Its JSON logs
(``--log-config examples/demo/logging.yaml``) carry the request id and the trace ids; ``/fail`` fails on purpose
to show an error answer (problem+json with the trace id) and its log line. With ``OTEL_EXPORTER_OTLP_ENDPOINT``
set, the spans go to that collector (docs/tracing.md).

    uvicorn --app-dir examples/demo app:app --port 8080 --log-config examples/demo/logging.yaml   (metrics on :9000)
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from starlette.middleware.trustedhost import TrustedHostMiddleware

import c2casgiutils
from c2casgiutils import broadcast, config, errors, headers, health_checks, lifecycle, request_id, tracing
from c2casgiutils import prometheus as c2c_prometheus
from c2casgiutils import sentry as c2c_sentry
from c2casgiutils.broadcast import MissingAnswer
from c2casgiutils.broadcast import types as broadcast_types

_LOGGER = logging.getLogger(__name__)
HERE = Path(__file__).parent

# The demo's own settings (not c2casgiutils settings): where its SQLite database lives.
DATABASE_URL = os.environ.get(
    "DEMO_DATABASE_URL",
    f"sqlite+aiosqlite:///{Path(tempfile.gettempdir()) / 'c2casgiutils-demo.sqlite3'}",
)
engine = create_async_engine(DATABASE_URL)
Session = async_sessionmaker(engine)


class EchoResponse(BaseModel):
    """Answer of one process to the echo broadcast."""

    message: str
    pid: int


class EchoHandlerProto(Protocol):
    async def __call__(
        self, *, message: str
    ) -> list[broadcast_types.BroadcastResponse[EchoResponse] | MissingAnswer] | None: ...


# Late assignment, at start-up
echo_handler: EchoHandlerProto = None  # type: ignore[assignment]


async def _echo_handler(*, message: str) -> EchoResponse:
    """Echo handler for broadcast messages."""
    return EchoResponse(message="Broadcast echo: " + message, pid=os.getpid())


def _run_migrations() -> None:
    """Bring the SQLite database to the head revision so that the Alembic check is green."""
    from alembic import command  # noqa: PLC0415
    from alembic.config import Config  # noqa: PLC0415

    alembic_config = Config(str(HERE / "alembic.ini"))
    alembic_config.set_main_option("script_location", str(HERE / "migrations"))
    alembic_config.set_main_option("sqlalchemy.url", DATABASE_URL)
    # Several workers start at once: one migrates, the others wait and then find the database at head.
    lock_path = Path(tempfile.gettempdir()) / "c2casgiutils-demo-migrations.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        command.upgrade(alembic_config, "head")


@asynccontextmanager
async def _lifespan(main_app: FastAPI) -> AsyncIterator[None]:
    """Handle application lifespan events."""
    _LOGGER.info("Starting the application")
    # Alembic's env.py runs its own event loop: give it a thread of its own.
    await asyncio.to_thread(_run_migrations)
    await c2casgiutils.startup(main_app)
    global echo_handler  # noqa: PLW0603
    echo_handler = await broadcast.decorate(_echo_handler, expect_answers=True)
    yield
    await c2casgiutils.shutdown(main_app)
    await engine.dispose()


c2c_sentry.init()

# fastapi_options(): FastAPI's own spans (recent releases) follow C2C__TRACING__TRUST_INBOUND too.
app = FastAPI(title="c2casgiutils demo", lifespan=_lifespan, **tracing.fastapi_options())
app.mount("/c2c", c2casgiutils.app)

# Errors as application/problem+json with the request and trace ids: unhandled ones (500) and, with
# client_errors, HTTPException (the 404 of /items/0) and validation errors (422).
errors.install_error_handlers(app, client_errors=True)
# Starlette runs the last added middleware first: TrustedHost is added last so that it runs first.
app.add_middleware(GZipMiddleware, minimum_size=1000)
app.add_middleware(
    CORSMiddleware,
    allow_origins=["*"],
    allow_credentials=False,  # "*" with credentials would let any site act with the user's cookies
    allow_methods=["*"],
    allow_headers=["*"],
)
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
app.add_middleware(TrustedHostMiddleware, allowed_hosts=["*"])
# While the process drains after SIGTERM (C2C__SHUTDOWN__DRAIN_DELAY), answers close their connection.
app.add_middleware(lifecycle.DrainMiddleware)

# Metrics on settings.prometheus.host:port (0.0.0.0:9000), safe with several workers (PROMETHEUS_MULTIPROC_DIR).
c2c_prometheus.start_metrics_server()
# The instrumentator's series (http_requests_total...) at a fraction of its cost (docs/operations.md).
app.add_middleware(c2c_prometheus.PrometheusMiddleware)
# Outermost: every request, and so every log line, metric exemplar and audit record of c2casgiutils.audit, has its
# request id and W3C trace context, also passed to outgoing calls; outside ForwardedHeadersMiddleware, so that
# C2C__TRACING__TRUST_INBOUND=trusted_proxies checks the proxy itself.
app.add_middleware(request_id.RequestIdMiddleware)


class Liveness(health_checks.Check):
    """The process answers: depends on no external service."""

    async def check(self) -> health_checks.Result:
        return health_checks.Result(status_code=200, payload={"pid": os.getpid()})


health_checks.FACTORY.add(Liveness(tags=["liveness", "all"]))
health_checks.FACTORY.add(health_checks.SQLAlchemy(Session=Session, tags=["readiness", "database", "all"]))
health_checks.FACTORY.add(
    health_checks.Alembic(
        Session=Session, config_file=str(HERE / "alembic.ini"), tags=["readiness", "migrations", "database", "all"]
    )
)
if config.settings.redis.url or config.settings.redis.sentinels:
    health_checks.FACTORY.add(health_checks.Redis(tags=["readiness", "redis", "all"]))


@app.get("/")
async def hello(request: Request) -> dict[str, Any]:
    """A hello route, with the process id to see which worker answered."""
    return {"message": "Hello from the c2casgiutils demo", "pid": os.getpid(), "admin": "/c2c/"}


@app.get("/fail")
async def fail() -> None:
    """Fails on purpose: the answer is a problem+json document with the trace id, the log line has the traceback."""
    raise RuntimeError("this route fails on purpose (see its log line)")


@app.get("/items/{item_id}")
async def item(item_id: int) -> dict[str, Any]:
    """An item; 0 does not exist: a 404 problem document. A non-number: a 422 one."""
    if item_id == 0:
        raise HTTPException(status_code=404, detail="There is no item 0")
    return {"item": item_id, "trace_id": getattr(tracing.get_trace_context(), "trace_id", None)}


@app.get("/echo")
async def echo(message: str = "hello") -> list[dict[str, Any]]:
    """Broadcast a message to every process of the service and list their answers."""
    answers = await echo_handler(message=message) or []
    return [
        {"missing": True} if isinstance(answer, MissingAnswer) else answer.model_dump(mode="json")
        for answer in answers
    ]


SLOW_MAX_SECONDS = 30.0


@app.get("/slow")
async def slow(
    seconds: float = Query(default=2.0, ge=0.0, le=SLOW_MAX_SECONDS, description="How long to answer"),
) -> dict[str, Any]:
    """Answer after ``seconds`` (at most 30): send SIGTERM meanwhile and watch the request complete."""
    await asyncio.sleep(seconds)
    return {"slept": seconds, "pid": os.getpid(), "state": lifecycle.process_state().value}


def main() -> None:
    """Run the demo with uvicorn on 127.0.0.1:8080 (``DEMO_HOST``/``DEMO_PORT`` to change)."""
    import uvicorn  # noqa: PLC0415

    uvicorn.run(
        app,
        host=os.environ.get("DEMO_HOST", "127.0.0.1"),
        port=int(os.environ.get("DEMO_PORT", "8080")),
        log_config=str(HERE / "logging.yaml"),
    )


if __name__ == "__main__":
    main()
