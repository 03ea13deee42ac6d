"""responder (seed 001): c2casgiutils.app mounted with api.mount, our middlewares added with api.add_middleware.

The API runs in uvicorn on a free 127.0.0.1 port and is driven through real HTTP requests.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator

import httpx
import pytest
import responder
from starlette.testclient import TestClient

from c2casgiutils import headers
from tests.frameworks import lifecycle
from tests.frameworks.checks import assert_armored, assert_page_nonce, registered_probes
from tests.frameworks.responder_app import create_api
from tests.frameworks.serving import serve

PROXIED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "service.example.com", "X-Forwarded-For": "203.0.113.7"}


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve(create_api()) as url:
        yield url
    assert lifecycle.EVENTS.count("responder:shutdown") >= 1


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=10) as http:
        yield http


def test_lifespan_reaches_responder_through_our_middlewares(client: httpx.Client) -> None:
    assert "responder:startup" in lifecycle.EVENTS
    assert client.get("/hello").text == "hello from responder"


def test_health_checks_answer_under_the_mount(client: httpx.Client) -> None:
    with registered_probes("responder") as (healthy, _failing):
        response = client.get("/c2c/health_checks", params={"name": "responder_ok"})
        assert response.status_code == 200, response.text
        assert [entity["name"] for entity in response.json()["entities"]] == ["responder_ok"]
        assert healthy.runs == 1
        assert_armored(response, hsts=False)

        broken = client.get("/c2c/health_checks", params={"tags": "frameworks"})
        assert broken.status_code == 500
        assert {entity["name"]: entity["status_code"] for entity in broken.json()["entities"]} == {
            "responder_ok": 200,
            "responder_broken": 500,
        }
        assert_armored(broken, hsts=False)


def test_security_headers_on_responder_routes(client: httpx.Client) -> None:
    local = client.get("/hello")
    assert local.text == "hello from responder"
    # 127.0.0.1 is a local host: no HSTS pinning a developer's browser.
    assert_armored(local, hsts=False)
    # Behind a trusted proxy the rules see the forwarded host: HSTS is back.
    proxied = client.get("/hello", headers=PROXIED)
    assert_armored(proxied, hsts=True)
    # responder's own 404 is armored too.
    missing = client.get("/nothing-here")
    assert missing.status_code == 404
    assert_armored(missing, hsts=False)


def test_csp_nonce_on_a_responder_page(client: httpx.Client) -> None:
    first = assert_page_nonce(client.get("/page"))
    second = assert_page_nonce(client.get("/page"))
    assert first != second


def test_forwarded_host_in_req_url(client: httpx.Client, base_url: str) -> None:
    direct = client.get("/url").json()
    assert direct == {"url": f"{base_url}/url", "scheme": "http", "netloc": base_url[7:], "client": "127.0.0.1"}
    proxied = client.get("/url", params={"q": "1"}, headers=PROXIED).json()
    assert proxied == {
        "url": "https://service.example.com/url?q=1",
        "scheme": "https",
        "netloc": "service.example.com",
        "client": "203.0.113.7",
    }
    with_port = client.get("/url", headers={**PROXIED, "X-Forwarded-Port": "8443"}).json()
    assert with_port["url"] == "https://service.example.com:8443/url"


def test_untrusted_peer_cannot_forward() -> None:
    # The TestClient's peer is "testclient", not the trusted 127.0.0.1: the headers are ignored.
    with TestClient(create_api(), base_url="http://testserver") as test_client:
        response = test_client.get("/url", headers=PROXIED)
    assert response.json()["url"] == "http://testserver/url"
    assert response.json()["client"] == "testclient"


def test_wrapping_the_api_armors_responders_500_page() -> None:
    """add_middleware sits inside responder's ServerErrorMiddleware; wrapping the API covers its 500 page."""
    api = create_api()

    @api.route("/boom")  # type: ignore[misc]
    async def boom(req: responder.Request, resp: responder.Response) -> None:
        raise RuntimeError("boom")

    with TestClient(headers.ArmorHeaderMiddleware(api), raise_server_exceptions=False) as test_client:
        response = test_client.get("/boom")
    assert response.status_code == 500
    assert response.headers["x-frame-options"] == "DENY"
    assert len(response.headers.get_list("x-frame-options")) == 1


def test_post_body_reaches_the_view(client: httpx.Client) -> None:
    body = os.urandom(300_000)
    response = client.post("/echo", content=body)
    assert response.json() == {"sha256": hashlib.sha256(body).hexdigest(), "length": len(body)}


def test_admin_page_under_the_mount(client: httpx.Client) -> None:
    response = client.get("/c2c/")
    assert response.status_code == 200
    # The default "c2c" rule: a nonce CSP for the admin page, assets relative to the mount.
    assert "'nonce-" in response.headers["content-security-policy"]
    assert re.search(r'<link rel="stylesheet" href="static/c2c\.css\?v=\w+"', response.text)
    docs = client.get("/c2c/docs")
    assert "url: '/c2c/openapi.json'" in docs.text
    assert client.get("/c2c/openapi.json").status_code == 200


def test_admin_page_assets_under_the_mount(client: httpx.Client) -> None:
    """The page's relative asset URL static/c2c.css resolves to /c2c/static/c2c.css: it must be served.

    responder's mount passes ``root_path="/c2c"`` and ``path="/static/c2c.css"`` (prefix removed); the
    sub-app's StaticFiles then looks for the file by the full path and answers 404.
    """
    css = client.get("/c2c/static/c2c.css")
    assert css.status_code == 200
    assert "text/css" in css.headers["content-type"]


def test_admin_page_login_comes_back_to_the_mount(client: httpx.Client, settings) -> None:  # type: ignore[no-untyped-def]
    """The login form's came_from is the admin page itself, /c2c/, whatever the framework's mount convention.

    responder's mount passes the sub-app a ``path`` without the mount prefix (``root_path="/c2c"``,
    ``path="/"``), the pre-2023 ASGI convention; the page must not send the user back to ``/``.
    """
    settings.auth.secret = "responder-test-secret-" + "x" * 20
    response = client.get("/c2c/")
    assert response.status_code == 200
    came_from = re.search(r'name="came_from" value="([^"]*)"', response.text)
    assert came_from is not None, response.text
    assert came_from.group(1) == "/c2c/"
