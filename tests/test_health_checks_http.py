"""The HTTP check against a real HTTP server on 127.0.0.1, a closed port and a black hole."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from c2casgiutils import health_checks
from tests.servers import BlackHole, free_port

SEEN_AUTHORIZATION: list[str | None] = []


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        SEEN_AUTHORIZATION.append(self.headers.get("Authorization"))  # before answering: no race
        status = {"/ok": 200, "/created": 201, "/redirect": 302}.get(self.path, 404)
        self.send_response(status)
        if status == 302:
            self.send_header("Location", "/ok")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    SEEN_AUTHORIZATION.clear()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def _run_one(check: health_checks.Check) -> health_checks.EntityResult:
    factory = health_checks.Factory()
    factory.add(check)
    (entity,) = (await factory.run()).entities
    return entity


async def test_expected_status(http_server: str) -> None:
    entity = await _run_one(health_checks.HTTP(f"{http_server}/ok"))
    assert entity.status_code == 200
    assert entity.name == "HTTP"
    assert entity.payload["status"] == 200


async def test_unexpected_status(http_server: str) -> None:
    entity = await _run_one(health_checks.HTTP(f"{http_server}/missing"))
    assert entity.status_code == 500
    assert entity.payload["status"] == 404
    assert entity.payload["error"] == "unexpected status 404"


async def test_several_expected_statuses_and_redirects(http_server: str) -> None:
    created = await _run_one(health_checks.HTTP(f"{http_server}/created", expected_status=[200, 201]))
    redirect = await _run_one(health_checks.HTTP(f"{http_server}/redirect", expected_status=302))
    followed = await _run_one(health_checks.HTTP(f"{http_server}/redirect", follow_redirects=True))
    assert (created.status_code, redirect.status_code, followed.status_code) == (200, 200, 200)


async def test_credentials_in_url_and_headers_are_not_reported(http_server: str) -> None:
    url = http_server.replace("http://", "http://monitor:url-secret@") + "/ok"
    with_url = await _run_one(health_checks.HTTP(url, name="basic"))
    with_header = await _run_one(
        health_checks.HTTP(f"{http_server}/ok", headers={"Authorization": "Bearer header-secret"}, name="bearer")
    )
    assert (with_url.status_code, with_header.status_code) == (200, 200)
    assert SEEN_AUTHORIZATION[0].startswith("Basic ")  # URL credentials are used...
    assert SEEN_AUTHORIZATION[1] == "Bearer header-secret"  # ...and headers are sent
    text = json.dumps([with_url.payload, with_header.payload])  # but neither is reported
    assert "url-secret" not in text
    assert "header-secret" not in text
    assert with_url.payload["url"].startswith("http://monitor:***@127.0.0.1:")


async def test_connection_refused() -> None:
    entity = await _run_one(health_checks.HTTP(f"http://127.0.0.1:{free_port()}/", timeout=5))
    assert entity.status_code == 500
    assert entity.payload["error"].startswith("ConnectError")


async def test_black_hole_is_bounded(black_hole: BlackHole) -> None:
    start = time.monotonic()
    entity = await _run_one(health_checks.HTTP(f"http://127.0.0.1:{black_hole.port}/", timeout=0.5))
    assert time.monotonic() - start < 0.5 + 2.0
    assert entity.status_code == 500
    # httpx's own timeout (same value) or the check's bound, whichever fires first
    assert "Timeout" in entity.payload["error"] or entity.payload["error"] == "timeout"


@pytest.mark.parametrize("url", ["ftp://example.com/", "not a url", "http://"])
def test_bad_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="http"):
        health_checks.HTTP(url)


def test_no_expected_status_is_refused() -> None:
    with pytest.raises(ValueError, match="expected_status"):
        health_checks.HTTP("http://127.0.0.1/", expected_status=[])
