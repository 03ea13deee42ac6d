"""Without the ``otel`` extra: trace context, trace ids in logs and errors, httpx propagation all work, and
c2casgiutils imports no OpenTelemetry module (FastAPI's recent releases import the API themselves: the modules
a bare FastAPI app loads for the same requests are the baseline)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).parent.parent

# Makes the packages of the extra look uninstalled: the SDK, the exporters, the instrumentations; and the API too
# when the installed FastAPI does not bring it (releases before its own telemetry), as on a real install.
BLOCKER = """
import sys
BLOCKED = ["opentelemetry.sdk", "opentelemetry.exporter", "opentelemetry.proto", "opentelemetry.instrumentation"]
class _Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.startswith(tuple(BLOCKED)):
            raise ImportError(f"No module named {name!r} (blocked by the test)")
        return None
sys.meta_path.insert(0, _Blocker())
import fastapi
if "opentelemetry" not in sys.modules:
    BLOCKED.append("opentelemetry")
"""

SCRIPT = """
import asyncio, io, json, logging, sys
import httpx
from fastapi import FastAPI

def otel_modules():
    return sorted(name for name in sys.modules if name.split(".")[0] == "opentelemetry")

async def serve(app, **headers):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                 base_url="http://t") as client:
        return await client.get("/call", headers=headers)

async def main():
    bare = FastAPI()

    @bare.get("/call")
    async def bare_call():
        return {}

    await serve(bare)
    baseline = otel_modules()

    import c2casgiutils
    from c2casgiutils import errors, request_id, tracing
    from c2casgiutils.logs import JsonFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logging.getLogger("app").addHandler(handler)
    logging.getLogger("app").setLevel(logging.INFO)
    seen = []

    def downstream(request):
        seen.append(request.headers.get("traceparent"))
        return httpx.Response(200)

    app = FastAPI(lifespan=c2casgiutils.lifespan)
    app.mount("/c2c", c2casgiutils.app)

    @app.get("/call")
    async def call():
        logging.getLogger("app").info("calling")
        async with request_id.async_client(transport=httpx.MockTransport(downstream)) as client:
            await client.get("http://downstream/")
        raise RuntimeError("after the call")

    errors.install_error_handlers(app, client_errors=True)
    app.add_middleware(request_id.RequestIdMiddleware)
    await c2casgiutils.startup(app)
    response = await serve(app, traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    await c2casgiutils.shutdown(app)
    print(json.dumps({
        "baseline": baseline,
        "after": otel_modules(),
        "status": response.status_code,
        "body": response.json(),
        "log": json.loads(stream.getvalue().splitlines()[0]),
        "downstream": seen,
    }))

asyncio.run(main())
"""


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "C2C__"))}
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(SCRIPT)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        env={**base, "PYTHONPATH": str(ROOT), **env},
    )


def test_trace_context_without_the_extra_and_no_opentelemetry_import() -> None:
    result = _run({})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["after"] == report["baseline"]
    assert not any(name.startswith(("opentelemetry.sdk", "opentelemetry.exporter")) for name in report["after"])
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    assert report["status"] == 500
    assert report["body"]["trace_id"] == trace_id
    assert (report["log"]["trace_id"], report["log"]["message"]) == (trace_id, "calling")
    (sent,) = report["downstream"]
    assert sent == f"00-{trace_id}-{report['log']['span_id']}-01"


def test_an_otlp_endpoint_without_the_extra_is_a_warning(tmp_path: Path) -> None:
    """The variable may be set for every service of a deployment: no export here, said once, the service runs."""
    result = _run({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert result.returncode == 0, result.stderr
    assert "c2casgiutils[otel]" in result.stderr
    assert "no span is exported" in result.stderr
    report = json.loads(result.stdout)
    assert report["after"] == report["baseline"]
    assert report["body"]["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
