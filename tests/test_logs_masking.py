"""Credentials in query strings never reach the access log in clear (real uvicorn process)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from c2casgiutils import logs
from tests.servers import free_port, wait_port

ROOT = Path(__file__).parent.parent
SECRET = "a-very-secret-value-1234"

APP = """
from fastapi import FastAPI
import c2casgiutils
app = FastAPI(lifespan=c2casgiutils.lifespan)
app.mount("/c2c", c2casgiutils.app)
"""


def test_filter_masks_credential_like_query_parameters() -> None:
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", f"/c2c/auth/login?secret={SECRET}&came_from=/c2c/&access_token=t0k", "1.1", 302),
        None,
    )
    assert logs.QuerySecretsFilter().filter(record)
    message = record.getMessage()
    assert SECRET not in message
    assert "t0k" not in message
    assert "secret=*****" in message
    assert "access_token=*****" in message
    assert "came_from=%2Fc2c%2F" in message


def test_filter_leaves_other_records_alone() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%s %d", ("/path?page=2", 1), None)
    logs.QuerySecretsFilter().filter(record)
    assert record.getMessage() == "/path?page=2 1"


def test_startup_installs_the_filter_once() -> None:
    logs.mask_access_log_secrets()
    logs.mask_access_log_secrets()
    access = logging.getLogger("uvicorn.access")
    assert sum(isinstance(existing, logs.QuerySecretsFilter) for existing in access.filters) == 1


def test_uvicorn_access_log_never_shows_the_secret(tmp_path: Path) -> None:
    (tmp_path / "masking_app.py").write_text(APP, encoding="utf-8")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("C2C__")}
    env.update({"C2C__AUTH__SECRET": SECRET, "C2C__PROMETHEUS__PORT": "", "PYTHONPATH": str(ROOT)})
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--app-dir", str(tmp_path), "masking_app:app", "--host", "127.0.0.1",
         "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        wait_port(port, timeout=60)
        response = httpx.get(
            f"http://127.0.0.1:{port}/c2c/auth/login", params={"secret": SECRET, "came_from": "/c2c/"}, timeout=30
        )
        assert response.status_code in (302, 303, 307)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            output = process.communicate(timeout=30)[0].decode(errors="replace")
        except subprocess.TimeoutExpired:
            process.kill()
            output = process.communicate(timeout=10)[0].decode(errors="replace")
    assert "/c2c/auth/login?secret=*****" in output
    assert SECRET not in output
