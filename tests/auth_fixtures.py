"""Fixtures of the auth tests: a service mounting /c2c with protected routes, and the fake GitHub."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient

import c2casgiutils
from c2casgiutils import auth
from tests.fake_github import FakeGitHub

REPOSITORY = "camptocamp/secret-repo"
JWT_SECRET = "0123456789abcdef0123456789abcdef-jwt-secret-for-tests"
SECRET = "a-long-shared-secret-for-the-tests"


def make_service() -> FastAPI:
    """A service as the docs describe it: /c2c mounted, its own routes protected by the auth dependencies."""
    app = FastAPI()
    app.mount("/c2c", c2casgiutils.app)

    @app.get("/service/admin", dependencies=[Depends(auth.require_admin_access)])
    async def admin_only() -> dict[str, str]:
        return {"access": "admin"}

    @app.get(
        "/service/push",
        dependencies=[
            Depends(auth.require_access(auth.AuthConfig(github_repository=REPOSITORY, github_access_type="push")))
        ],
    )
    async def push_only() -> dict[str, str]:
        return {"access": "push"}

    @app.get("/service/logged", dependencies=[Depends(auth.auth_required)])
    async def logged() -> dict[str, str]:
        return {"access": "logged"}

    @app.get("/service/context")
    async def context(access: Annotated[auth.AccessContext, Depends(auth.get_access_context)]) -> dict[str, Any]:
        return {
            "login": access.auth_info.user.login,
            "read_only": await access.check_read_only_access(),
            "read_write": await access.check_read_write_access(),
        }

    @app.get("/service/has-admin")
    async def has_admin(request: Request) -> dict[str, bool]:
        return {"admin": await auth.has_admin_access(request)}

    return app


def client_for(app: FastAPI, host: str = "testclient") -> TestClient:
    # https so that the Secure cookies (the default) are sent back, as a browser would.
    return TestClient(app, base_url="https://testserver", client=(host, 50000), follow_redirects=False)


def jwt_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, read without verification (what anyone holding the cookie can read)."""
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def set_cookie_headers(response: Any) -> list[str]:
    return list(response.headers.get_list("set-cookie"))


@pytest.fixture
def auth_settings(settings: Any) -> Iterator[Any]:
    """Settings with no authentication, a small rate limit, cookies valid on the whole site."""
    settings.auth.secret = None
    settings.auth.test.username = None
    settings.auth.jwt.secret = None
    settings.auth.github.client_id = None
    settings.auth.github.client_secret = None
    settings.auth.github.repository = None
    settings.auth.jwt.cookie.path = "/"
    settings.auth.rate_limit.max_failures = 3
    settings.auth.github.timeout = timedelta(seconds=2)
    auth.reset_state()
    yield settings
    auth.reset_state()


@pytest.fixture
def service() -> FastAPI:
    return make_service()


@pytest.fixture
def client(service: FastAPI) -> Iterator[TestClient]:
    with client_for(service) as test_client:
        yield test_client


@pytest.fixture
def fake_github() -> Iterator[FakeGitHub]:
    fake = FakeGitHub()
    fake.add_user("octocat", "The Octocat")
    fake.add_user("reader", None)
    fake.grant("octocat", REPOSITORY, "admin")
    fake.grant("reader", REPOSITORY, "pull")
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def github_settings(auth_settings: Any, fake_github: FakeGitHub) -> Any:
    fake_github.configure(auth_settings, REPOSITORY)
    auth_settings.auth.jwt.secret = JWT_SECRET
    return auth_settings
