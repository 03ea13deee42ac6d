"""GET /c2c/headers: the request as the service sees it, credentials masked, admin only."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

import c2casgiutils
from c2casgiutils.headers import ForwardedHeadersMiddleware

SECRET = "headers-test-secret-with-enough-length-0123456789"
ADMIN = {"X-API-Key": SECRET}


@pytest.fixture
async def client(settings) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    settings.auth.secret = SECRET
    app = FastAPI()
    app.mount("/c2c", c2casgiutils.app)
    proxied = ForwardedHeadersMiddleware(app, trusted_hosts=["127.0.0.1"], headers_type="x-forwarded")
    transport = httpx.ASGITransport(app=proxied, client=("127.0.0.1", 4321))
    async with httpx.AsyncClient(transport=transport, base_url="http://service.test") as http:
        yield http


async def test_refused_without_admin_access(client: httpx.AsyncClient) -> None:
    for path in ("/c2c/headers", "/c2c/headers/a", "/c2c/headers/a/b"):
        response = await client.get(path)
        assert response.status_code in (401, 403), path
        assert "headers" not in response.json()


async def test_refused_with_wrong_secret(client: httpx.AsyncClient) -> None:
    response = await client.get("/c2c/headers", headers={"X-API-Key": "wrong"})
    assert response.status_code in (401, 403)


async def test_credentials_are_masked(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/c2c/headers",
        headers={**ADMIN, "Authorization": "Bearer very-secret-token", "Cookie": "session=abc", "X-Custom": "kept"},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["headers"]["authorization"] == "*****"
    assert body["headers"]["cookie"] == "*****"
    assert body["headers"]["x-api-key"] == "*****"
    assert body["headers"]["x-custom"] == "kept"
    assert "very-secret-token" not in response.text
    assert SECRET not in response.text
    assert "session=abc" not in response.text


async def test_extra_segments_and_query(client: httpx.AsyncClient) -> None:
    one = (await client.get("/c2c/headers/first?x=1", headers=ADMIN)).json()
    assert one["path_params"] == {"path_1": "first"}
    assert one["query_params"] == {"x": "1"}
    assert one["url"]["path"] == "/c2c/headers/first"
    two = (await client.get("/c2c/headers/first/second", headers=ADMIN)).json()
    assert two["path_params"] == {"path_1": "first", "path_2": "second"}
    assert two["scope"]["root_path"] == "/c2c"
    three = await client.get("/c2c/headers/a/b/c", headers=ADMIN)
    assert three.status_code == 404


async def test_shows_what_the_proxy_handling_made(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/c2c/headers",
        headers={
            **ADMIN,
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "public.example.org",
            "X-Forwarded-For": "203.0.113.9",
        },
    )
    body = response.json()
    assert body["url"]["scheme"] == "https"
    assert body["url"]["hostname"] == "public.example.org"
    assert body["base_url"]["url"].startswith("https://public.example.org/")
    assert body["client"].startswith("203.0.113.9:")
    assert body["scope"]["scheme"] == "https"
