"""``came_from`` only redirects to the same host: open-redirect attempts are refused with 400."""

from __future__ import annotations

from typing import Any

import pytest

from tests.auth_fixtures import *  # noqa: F403 # the fixtures
from tests.auth_fixtures import SECRET

REFUSED = [
    "https://evil.example/",
    "http://evil.example/c2c/",
    "//evil.example/path",
    "///evil.example/path",
    "/\\evil.example",
    "\\\\evil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    " //evil.example",
    "javascript:alert(1)",
    "JavaScript:alert(document.cookie)",
    "data:text/html,<script>alert(1)</script>",
    "ftp://testserver/file",
    "https://testserver@evil.example/",
    "https://testserver.evil.example/",
    "https://evil.example\\@testserver/",
    "http:evil.example",
    "https:/evil.example",
    "evil.example/path",
]
ACCEPTED = ["/c2c/", "/c2c/tools?x=1#top", "https://testserver/c2c/", "HTTPS://TESTSERVER/c2c/"]


@pytest.mark.parametrize("came_from", REFUSED)
def test_refused_on_secret_login(auth_settings: Any, client: Any, came_from: str) -> None:
    auth_settings.auth.secret = SECRET
    response = client.post("/c2c/auth/login", data={"secret": SECRET, "came_from": came_from})
    assert response.status_code == 400
    assert "came_from" in response.json()["detail"]
    assert "location" not in response.headers
    assert "set-cookie" not in response.headers


@pytest.mark.parametrize("came_from", REFUSED)
def test_refused_on_github_login(github_settings: Any, client: Any, came_from: str) -> None:
    response = client.get("/c2c/auth/github/login", params={"came_from": came_from})
    assert response.status_code == 400
    assert "location" not in response.headers


@pytest.mark.parametrize("came_from", REFUSED[:6])
def test_refused_on_logout(auth_settings: Any, client: Any, came_from: str) -> None:
    assert client.get("/c2c/auth/logout", params={"came_from": came_from}).status_code == 400
    assert client.get("/c2c/auth/github/logout", params={"came_from": came_from}).status_code == 400


@pytest.mark.parametrize("came_from", ACCEPTED)
def test_accepted(auth_settings: Any, client: Any, came_from: str) -> None:
    auth_settings.auth.secret = SECRET
    response = client.post("/c2c/auth/login", data={"secret": SECRET, "came_from": came_from})
    assert response.status_code == 303
    assert response.headers["location"] == came_from
