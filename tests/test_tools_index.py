"""The admin page's HTML: public parts only without admin access, assets with matching integrity."""

from __future__ import annotations

import base64
import hashlib
import os
import re

import httpx
from fastapi import FastAPI

import c2casgiutils

SECRET = "index-test-secret-with-enough-length-0123456789"


def _client() -> httpx.AsyncClient:
    app = FastAPI()
    app.mount("/c2c", c2casgiutils.app)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service.test")


async def test_closed_without_authentication(settings) -> None:  # type: ignore[no-untyped-def]
    settings.auth.secret = None
    async with _client() as client:
        response = await client.get("/c2c/")
    assert response.status_code == 200
    assert "admin tools are closed" in response.text
    assert 'id="c2c-login-form"' not in response.text
    assert 'id="c2c-logging"' not in response.text


async def test_public_view_with_secret_configured(settings) -> None:  # type: ignore[no-untyped-def]
    settings.auth.secret = SECRET
    async with _client() as client:
        response = await client.get("/c2c/")
    assert response.headers["cache-control"] == "no-store"
    assert 'id="c2c-login-form"' in response.text
    assert 'name="came_from" value="/c2c/"' in response.text
    assert 'id="c2c-health"' in response.text
    for admin_only in ("c2c-logging", "c2c-headers", "c2c-debug", "c2c-logout"):
        assert f'id="{admin_only}"' not in response.text
    assert SECRET not in response.text


async def test_admin_view(settings) -> None:  # type: ignore[no-untyped-def]
    settings.auth.secret = SECRET
    settings.tools.logging.application_module = "my<service>"
    async with _client() as client:
        response = await client.get("/c2c/", headers={"X-API-Key": SECRET})
    for section in ("c2c-logging", "c2c-headers", "c2c-debug", "c2c-logout"):
        assert f'id="{section}"' in response.text
    assert 'id="c2c-login-form"' not in response.text
    assert 'value="my&lt;service&gt;"' in response.text


async def test_github_button_when_configured(settings) -> None:  # type: ignore[no-untyped-def]
    settings.auth.secret = None
    settings.auth.jwt.secret = "j" * 40
    settings.auth.github.client_id = "client"
    settings.auth.github.client_secret = "client-secret"
    settings.auth.github.repository = "owner/repo"
    async with _client() as client:
        response = await client.get("/c2c/")
    assert 'href="auth/github/login?came_from=%2Fc2c%2F"' in response.text
    assert 'id="c2c-login-form"' not in response.text


async def test_no_inline_code_and_integrity_matches(settings) -> None:  # type: ignore[no-untyped-def]
    settings.auth.secret = SECRET
    async with _client() as client:
        page = (await client.get("/c2c/", headers={"X-API-Key": SECRET})).text
        assert "<style" not in page
        assert " style=" not in page
        assert re.search(r"<script(?![^>]*\bsrc=)", page) is None
        assert re.search(r"\son[a-z]+=", page) is None
        assets = re.findall(r'(?:src|href)="(static/[^"]+)" integrity="([^"]+)"', page)
        assert len(assets) == 2
        for url, integrity in assets:
            response = await client.get(f"/c2c/{url}")
            assert response.status_code == 200
            digest = base64.b64encode(hashlib.sha384(response.content).digest()).decode()
            assert integrity == f"sha384-{digest}"


async def test_the_page_shows_the_availability_state(settings) -> None:  # type: ignore[no-untyped-def]
    settings.auth.secret = SECRET
    await c2casgiutils.startup()
    try:
        async with _client() as client:
            page = (await client.get("/c2c/")).text
        assert 'id="c2c-availability" class="c2c-muted" data-state="accepting"' in page
        assert f"{os.getpid()}: accepting" in page
        settings.health_checks.detailed_payloads = False  # no pid for the public then, as in the probes
        async with _client() as client:
            public = (await client.get("/c2c/")).text
            admin = (await client.get("/c2c/", headers={"X-API-Key": SECRET})).text
        assert 'data-state="accepting">Instance accepting</p>' in public
        assert str(os.getpid()) not in public.split('id="c2c-availability"')[1].split("</p>")[0]
        assert f"{os.getpid()}: accepting" in admin
    finally:
        await c2casgiutils.shutdown()
    async with _client() as client:
        assert 'data-state="starting"' in (await client.get("/c2c/")).text
