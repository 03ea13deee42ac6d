"""Django (seed 000) on ASGI: get_asgi_application() wrapped by our middlewares, /c2c routed by PathDispatcher.

The application runs in uvicorn on a free 127.0.0.1 port and is driven through real HTTP requests.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator

import httpx
import pytest

from tests.frameworks import lifecycle
from tests.frameworks.checks import assert_armored, assert_page_nonce, registered_probes
from tests.frameworks.django_site import create_asgi_app
from tests.frameworks.serving import serve

PROXIED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "service.example.com", "X-Forwarded-For": "203.0.113.7"}


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve(create_asgi_app()) as url:
        yield url
    assert lifecycle.EVENTS.count("django:shutdown") >= 1


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=10) as http:
        yield http


def test_lifespan_is_answered_for_django(client: httpx.Client) -> None:
    assert "django:startup" in lifecycle.EVENTS
    assert client.get("/hello").json()["message"] == "hello from django"


def test_views_see_the_forwarded_scheme_host_and_client(client: httpx.Client, base_url: str) -> None:
    direct = client.get("/hello").json()
    assert direct["absolute_uri"] == f"{base_url}/hello"
    assert direct["is_secure"] is False
    assert direct["remote_addr"] == "127.0.0.1"

    proxied = client.get("/hello", params={"a": "b"}, headers=PROXIED).json()
    assert proxied["absolute_uri"] == "https://service.example.com/hello?a=b"
    assert proxied["is_secure"] is True
    assert proxied["host"] == "service.example.com"
    assert proxied["remote_addr"] == "203.0.113.7"


def test_views_see_the_forwarded_prefix(client: httpx.Client) -> None:
    proxied = client.get("/hello", headers={**PROXIED, "X-Forwarded-Prefix": "/svc"}).json()
    assert proxied["absolute_uri"] == "https://service.example.com/svc/hello"
    assert proxied["script_name"] == "/svc"
    assert proxied["path_info"] == "/hello"


def test_security_headers_replace_djangos_own(client: httpx.Client) -> None:
    response = client.get("/hello")
    # Django's XFrameOptionsMiddleware sent "X-Frame-Options: SAMEORIGIN": ours replaces it, once.
    assert_armored(response, hsts=False)
    assert response.json()["has_nonce"] is True
    assert_armored(client.get("/hello", headers=PROXIED), hsts=True)
    not_found = client.get("/nothing-here")
    assert not_found.status_code == 404
    assert_armored(not_found, hsts=False)


def test_csp_nonce_on_a_django_page(client: httpx.Client) -> None:
    assert assert_page_nonce(client.get("/page")) != assert_page_nonce(client.get("/page"))


def test_disallowed_forwarded_host_is_refused_by_django(client: httpx.Client) -> None:
    response = client.get("/hello", headers={**PROXIED, "X-Forwarded-Host": "evil.example.net"})
    assert response.status_code == 400
    assert_armored(response, hsts=True)


def test_post_json_reaches_the_view_intact(client: httpx.Client) -> None:
    response = client.post("/echo", json={"message": "hello", "count": 2})
    assert response.status_code == 200, response.text
    assert response.json()["message"] == "hello"
    assert response.json()["count"] == 2


def test_chunked_post_body_reaches_the_view_intact(client: httpx.Client) -> None:
    body = os.urandom(1_000_000)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 65_536):
            yield body[start : start + 65_536]

    response = client.post("/echo", content=chunks(), headers={**PROXIED, "Content-Type": "application/octet-stream"})
    assert response.status_code == 200, response.text
    assert response.json()["sha256"] == hashlib.sha256(body).hexdigest()
    assert response.json()["length"] == len(body)


def test_health_checks_next_to_django(client: httpx.Client) -> None:
    with registered_probes("django") as (healthy, _failing):
        response = client.get("/c2c/health_checks", params={"name": "django_ok"})
        assert response.status_code == 200, response.text
        assert response.json()["entities"][0]["name"] == "django_ok"
        assert_armored(response, hsts=False)
        assert client.get("/c2c/health_checks", params={"name": "django_broken"}).status_code == 500
        # Behind a proxy that strips /svc and says so.
        prefixed = client.get(
            "/c2c/health_checks", params={"name": "django_ok"}, headers={"X-Forwarded-Prefix": "/svc"}
        )
        assert prefixed.status_code == 200
        assert healthy.runs == 2


@pytest.mark.parametrize(("forwarded", "prefix"), [({}, "/c2c"), ({"X-Forwarded-Prefix": "/svc"}, "/svc/c2c")])
def test_c2c_app_knows_its_root_path(client: httpx.Client, settings, forwarded: dict[str, str], prefix: str) -> None:  # type: ignore[no-untyped-def]
    docs = client.get("/c2c/docs", headers=forwarded)
    assert f"url: '{prefix}/openapi.json'" in docs.text
    assert client.get("/c2c/static/c2c.css").status_code == 200
    settings.auth.secret = "django-test-secret-" + "x" * 20
    page = client.get("/c2c/", headers=forwarded)
    came_from = re.search(r'name="came_from" value="([^"]*)"', page.text)
    assert came_from is not None, page.text
    assert came_from.group(1) == f"{prefix}/"
    assert "'nonce-" in page.headers["content-security-policy"]
