"""shallot (seed 002, the PyPI package ``shallot`` 2.0: the ASGI framework of dict handlers) behind our middlewares.

The application runs in uvicorn on a free 127.0.0.1 port and is driven through real HTTP requests.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator

import httpx
import pytest

from tests.frameworks import lifecycle, shallot_app
from tests.frameworks.checks import assert_armored, assert_page_nonce, registered_probes
from tests.frameworks.serving import serve

PROXIED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "service.example.com", "X-Forwarded-For": "203.0.113.7"}


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve(shallot_app.create_asgi_app()) as url:
        yield url
    assert lifecycle.EVENTS.count("shallot:shutdown") >= 1


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=10) as http:
        yield http


def test_lifespan_reaches_shallot_through_our_middlewares(client: httpx.Client) -> None:
    assert "shallot:startup" in lifecycle.EVENTS
    # shallot hands the result of its on_start to every request: it only has it after a real lifespan start-up.
    assert client.get("/hello").json()["config"] == {"started_by": "shallot lifespan"}


def test_handler_sees_the_forwarded_request(client: httpx.Client, base_url: str) -> None:
    direct = client.get("/hello").json()
    assert direct["scheme"] == "http"
    assert direct["host"] == base_url[7:]
    assert direct["client"] == "127.0.0.1"
    assert direct["nonce"]
    proxied = client.get("/hello", headers=PROXIED).json()
    assert proxied["scheme"] == "https"
    assert proxied["host"] == "service.example.com"
    assert proxied["server"] == ["service.example.com", 443]
    assert proxied["client"] == "203.0.113.7"


def test_security_headers_on_shallot_responses(client: httpx.Client) -> None:
    # The handler set "X-Frame-Options: SAMEORIGIN" itself: replaced, once.
    assert_armored(client.get("/hello"), hsts=False)
    assert_armored(client.get("/hello", headers=PROXIED), hsts=True)
    not_found = client.get("/nothing-here")
    assert not_found.status_code == 404
    assert_armored(not_found, hsts=False)


def test_csp_nonce_on_a_shallot_page(client: httpx.Client) -> None:
    assert assert_page_nonce(client.get("/page")) != assert_page_nonce(client.get("/page"))


def test_body_read_by_shallot_is_intact(client: httpx.Client) -> None:
    body = os.urandom(200_000)
    response = client.post("/echo", content=body)
    assert response.json()["sha256"] == hashlib.sha256(body).hexdigest()
    payload = {"message": "hello", "count": 2}
    assert client.post("/echo", json=payload).json()["json"] == payload


def test_streamed_response_is_not_buffered(client: httpx.Client) -> None:
    shallot_app.STREAM_RELEASE.clear()
    with client.stream("GET", "/stream") as response:
        assert_armored(response, hsts=False)
        chunks = response.iter_raw()
        # The second chunk is only produced after we got the first: a buffering middleware would time out here.
        assert next(chunks) == b"first\n"
        shallot_app.STREAM_RELEASE.set()
        assert b"".join(chunks) == b"second\n"


def test_health_checks_next_to_shallot(client: httpx.Client) -> None:
    with registered_probes("shallot") as (_healthy, _failing):
        response = client.get("/c2c/health_checks", params={"tags": "frameworks"})
        assert response.status_code == 500
        statuses = {entity["name"]: entity["status_code"] for entity in response.json()["entities"]}
        assert statuses == {"shallot_ok": 200, "shallot_broken": 500}
        assert_armored(response, hsts=False)
        ok = client.get("/c2c/health_checks", params={"name": "shallot_ok"})
        assert ok.status_code == 200
        assert json.loads(ok.text)["entities"][0]["payload"] == {"runs": 2}
