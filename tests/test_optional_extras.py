"""`import c2casgiutils` works with only the core; an integration used without its extra names the extra."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent

# A meta-path finder that makes the optional packages look uninstalled, as on a core-only install.
BLOCKER = """
import sys
BLOCKED = ("redis", "sqlalchemy", "alembic", "prometheus_client", "prometheus_fastapi_instrumentator",
           "sentry_sdk", "aiosqlite", "asyncpg")
class _Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"No module named {name!r} (blocked by the test)")
        return None
sys.meta_path.insert(0, _Blocker())
"""


def _run(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(code)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
    )


def test_import_with_only_the_core() -> None:
    result = _run("""
        import c2casgiutils
        from c2casgiutils import broadcast, headers, health_checks, auth, cli, config, redis_utils, prometheus, sentry
        from fastapi import FastAPI
        from fastapi.testclient import TestClient
        app = FastAPI()
        app.mount("/c2c", c2casgiutils.app)
        with TestClient(app) as client:
            assert client.get("/c2c/").status_code == 200
        for name in ("redis", "sqlalchemy", "alembic", "prometheus_client", "sentry_sdk"):
            assert name not in sys.modules, name
        print("ok")
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


@pytest.mark.parametrize(
    ("code", "extra", "env"),
    [
        ("from c2casgiutils import redis_utils; redis_utils.build()", "redis",
         {"C2C__REDIS__URL": "redis://127.0.0.1:1"}),
        ("from c2casgiutils import prometheus; prometheus.start_metrics_server(port=0)", "prometheus", {}),
        ("from c2casgiutils import sentry; sentry.init()", "sentry", {"C2C__SENTRY__DSN": "http://k@127.0.0.1:1/1"}),
        ("from c2casgiutils import health_checks; health_checks.SQLAlchemy(Session=None)", "sqlalchemy", {}),
        ("from c2casgiutils import health_checks; health_checks.Alembic(Session=None)", "alembic", {}),
    ],
)
def test_integration_without_its_extra_names_the_extra(code: str, extra: str, env: dict[str, str]) -> None:
    result = _run(code, env)
    assert result.returncode != 0
    assert "MissingExtraError" in result.stderr
    assert f"c2casgiutils[{extra}]" in result.stderr
