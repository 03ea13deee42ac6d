"""WSGI (seed 004): chocs, and Flask for URL building, through a2wsgi behind our middlewares, next to /c2c.

chocs 1.6 installs and runs on Python 3.11; its WSGI handler sends a status without reason phrase, which
``with_reason_phrase`` completes (PEP 3333). Each app runs in uvicorn on a free port, driven over real HTTP.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import httpx
import pytest

from tests.frameworks import lifecycle
from tests.frameworks.checks import assert_armored, assert_page_nonce, registered_probes
from tests.frameworks.serving import serve
from tests.frameworks.wsgi_apps import create_asgi_app, create_chocs_wsgi, create_flask_wsgi

PROXIED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "service.example.com", "X-Forwarded-For": "203.0.113.7"}


@pytest.fixture(scope="module")
def chocs_client() -> Iterator[httpx.Client]:
    with serve(create_asgi_app(create_chocs_wsgi(), "chocs")) as url, httpx.Client(base_url=url, timeout=10) as http:
        yield http
    assert "chocs:shutdown" in lifecycle.EVENTS


@pytest.fixture(scope="module")
def flask_client() -> Iterator[httpx.Client]:
    with serve(create_asgi_app(create_flask_wsgi(), "flask")) as url, httpx.Client(base_url=url, timeout=10) as http:
        yield http


def test_chocs_routes_are_armored(chocs_client: httpx.Client) -> None:
    assert "chocs:startup" in lifecycle.EVENTS
    response = chocs_client.get("/hello")
    assert response.json()["message"] == "hello from chocs"
    # chocs set "X-Frame-Options: SAMEORIGIN" itself: replaced, once.
    assert_armored(response, hsts=False)
    proxied = chocs_client.get("/hello", headers=PROXIED)
    assert proxied.json()["host"] == "service.example.com"
    assert_armored(proxied, hsts=True)
    not_found = chocs_client.get("/nothing-here")
    assert not_found.status_code == 404
    assert_armored(not_found, hsts=False)


def test_chocs_reads_the_body_intact(chocs_client: httpx.Client) -> None:
    body = os.urandom(500_000)
    response = chocs_client.post("/echo", content=iter([body[:100_000], body[100_000:]]))
    assert response.json() == {"sha256": hashlib.sha256(body).hexdigest(), "length": len(body)}


def test_health_checks_next_to_chocs(chocs_client: httpx.Client) -> None:
    with registered_probes("chocs"):
        response = chocs_client.get("/c2c/health_checks", params={"name": "chocs_ok"})
        assert response.status_code == 200, response.text
        assert response.json()["entities"][0]["name"] == "chocs_ok"
        assert_armored(response, hsts=False)
        assert chocs_client.get("/c2c/health_checks", params={"name": "chocs_broken"}).status_code == 500


def test_flask_sees_the_forwarded_url(flask_client: httpx.Client) -> None:
    direct = flask_client.get("/hello").json()
    assert direct["scheme"] == "http"
    assert direct["remote_addr"] == "127.0.0.1"
    assert direct["url"] == f"{str(flask_client.base_url).rstrip('/')}/hello"
    proxied = flask_client.get("/hello", headers={**PROXIED, "X-Forwarded-Prefix": "/svc"}).json()
    assert proxied == {
        "url": "https://service.example.com/svc/hello",
        "external": "https://service.example.com/svc/hello",
        "scheme": "https",
        "script_root": "/svc",
        "remote_addr": "203.0.113.7",
    }


def test_flask_page_gets_the_csp_nonce(flask_client: httpx.Client) -> None:
    assert assert_page_nonce(flask_client.get("/page")) != assert_page_nonce(flask_client.get("/page"))


def test_flask_reads_the_body_intact(flask_client: httpx.Client) -> None:
    body = os.urandom(300_000)
    response = flask_client.post("/echo", content=body, headers=PROXIED)
    assert response.json() == {"sha256": hashlib.sha256(body).hexdigest(), "length": len(body)}
    assert_armored(response, hsts=True)


def test_c2c_next_to_flask_behind_a_prefix(flask_client: httpx.Client) -> None:
    docs = flask_client.get("/c2c/docs", headers={"X-Forwarded-Prefix": "/svc"})
    assert "url: '/svc/c2c/openapi.json'" in docs.text
    assert flask_client.get("/c2c/health_checks").status_code == 200
