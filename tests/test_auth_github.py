"""GitHub OAuth against the fake GitHub on 127.0.0.1: full login, state, refresh, permission cache, errors."""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest

from c2casgiutils import auth
from c2casgiutils.auth import _cookies, _session
from tests.auth_fixtures import *  # noqa: F403 # the fixtures
from tests.auth_fixtures import REPOSITORY, client_for, jwt_claims, set_cookie_headers
from tests.fake_github import FakeGitHub

CALLBACK = "https://testserver/c2c/auth/github/callback"


def start_login(client: Any, fake: FakeGitHub, came_from: str | None = None) -> str:
    """Follow /github/login and GitHub's authorize page; return the callback URL GitHub sends back to."""
    params = {"came_from": came_from} if came_from else {}
    start = client.get("/c2c/auth/github/login", params=params)
    assert start.status_code in (302, 307), start.text
    location = start.headers["location"]
    assert location.startswith(f"{fake.url}/login/oauth/authorize?")
    answer = httpx.get(location, follow_redirects=False, timeout=5)
    assert answer.status_code == 302
    return answer.headers["location"]


def github_login(client: Any, fake: FakeGitHub, came_from: str | None = None) -> httpx.Response:
    response = client.get(start_login(client, fake, came_from))
    assert response.status_code == 303, response.text
    return response


def test_full_login(github_settings: Any, fake_github: FakeGitHub, client: Any) -> None:
    start = client.get("/c2c/auth/github/login", params={"came_from": "/c2c/somewhere?x=1"})
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(start.headers["location"]).query))
    assert query["client_id"] == fake_github.client_id
    assert query["redirect_uri"] == CALLBACK
    assert query["scope"] == "repo"
    assert query["response_type"] == "code"
    assert len(query["state"]) >= 32
    (state_cookie,) = set_cookie_headers(start)
    lowered = state_cookie.lower()
    assert lowered.startswith("c2c-state=")
    assert "httponly" in lowered
    assert "secure" in lowered
    assert "samesite=lax" in lowered
    assert "path=/c2c/auth/github/callback" in lowered
    assert query["state"] not in state_cookie or jwt_claims(client.cookies.get("c2c-state"))["state"] == query["state"]

    callback = httpx.get(start.headers["location"], follow_redirects=False, timeout=5).headers["location"]
    response = client.get(callback)
    assert response.status_code == 303
    assert response.headers["location"] == "/c2c/somewhere?x=1"
    assert fake_github.hits["token"] == 1
    assert fake_github.token_requests[-1]["redirect_uri"] == CALLBACK

    status = client.get("/c2c/auth/status").json()
    assert status["is_logged_in"] is True
    assert status["type"] == "github_oauth"
    assert status["user"] == {"login": "octocat", "display_name": "The Octocat", "url": "https://github.com/octocat"}
    assert status["is_admin"] is True
    assert status["methods"] == ["github"]

    assert client.get("/service/admin").status_code == 200
    assert client.get("/service/push").status_code == 200
    assert client.get("/service/context").json() == {"login": "octocat", "read_only": True, "read_write": True}


def test_token_never_reaches_the_browser(github_settings: Any, fake_github: FakeGitHub, client: Any) -> None:
    bodies = []
    response = github_login(client, fake_github)
    bodies.append(str(response.headers) + response.text)
    for path in ("/c2c/auth/status", "/service/admin", "/service/context", "/c2c/auth/logout"):
        answer = client.get(path)
        bodies.append(str(answer.headers) + answer.text)
    tokens = fake_github.known_tokens()
    assert len(tokens) == 2  # the access token and the refresh token
    session = response.cookies.get("c2c-jwt-auth") or client.cookies.get("c2c-jwt-auth")
    claims = jwt_claims(session)
    assert claims["kind"] == "github"
    assert {"at", "rt", "exp", "iat"} <= set(claims)
    for token in tokens:
        assert token not in session
        assert token not in str(claims)
        for body in bodies:
            assert token not in body


def test_permission_below_required(github_settings: Any, fake_github: FakeGitHub, client: Any) -> None:
    github_settings.auth.github.access_type = "push"
    fake_github.next_login = "reader"
    github_login(client, fake_github)
    response = client.get("/service/admin")
    assert response.status_code == 403
    assert "'push'" in response.json()["detail"]
    assert REPOSITORY in response.json()["detail"]
    assert client.get("/service/push").status_code == 403
    assert client.get("/service/context").json() == {"login": "reader", "read_only": True, "read_write": False}
    assert client.get("/c2c/auth/status").json()["is_admin"] is False


def test_user_without_repository_access(github_settings: Any, fake_github: FakeGitHub, client: Any) -> None:
    fake_github.add_user("stranger")
    fake_github.next_login = "stranger"
    github_login(client, fake_github)
    assert client.get("/service/admin").status_code == 403  # GitHub answers 404 for the private repository


def test_callback_without_state_cookie(github_settings: Any, client: Any) -> None:
    response = client.get("/c2c/auth/github/callback", params={"code": "abc", "state": "x"})
    assert response.status_code == 400
    assert "state cookie" in response.json()["detail"]


def test_callback_state_mismatch_or_missing(github_settings: Any, fake_github: FakeGitHub, client: Any) -> None:
    callback = start_login(client, fake_github)
    code = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(callback).query))["code"]
    response = client.get("/c2c/auth/github/callback", params={"code": code, "state": "forged"})
    assert response.status_code == 400
    assert "mismatch" in response.json()["detail"]
    assert "c2c-jwt-auth" not in response.headers.get("set-cookie", "")
    # The state cookie is deleted at the first callback: the legitimate one cannot be replayed either.
    assert client.get(callback).status_code == 400

    start_login(client, fake_github)
    response = client.get("/c2c/auth/github/callback", params={"code": code})
    assert response.status_code == 400
    assert "Missing 'state'" in response.json()["detail"]
    assert fake_github.hits["token"] == 0


def test_callback_forged_or_expired_state_cookie(github_settings: Any, fake_github: FakeGitHub, client: Any) -> None:
    callback = start_login(client, fake_github)
    state = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(callback).query))["state"]
    now = int(time.time())
    forged = jwt.encode({"kind": "state", "state": state, "iat": now, "exp": now + 60}, "x" * 64, algorithm="HS256")
    client.cookies.set("c2c-state", forged, domain="testserver.local", path="/c2c/auth/github/callback")
    response = client.get(callback)
    assert response.status_code == 400
    assert "Invalid OAuth state cookie" in response.json()["detail"]

    callback = start_login(client, fake_github)
    state = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(callback).query))["state"]
    expired = _cookies.encode("state", {"state": state}, _session.github_key(), -10)
    client.cookies.set("c2c-state", expired, domain="testserver.local", path="/c2c/auth/github/callback")
    response = client.get(callback)
    assert response.status_code == 400
    assert "expired" in response.json()["detail"]


def test_user_denies_access(github_settings: Any, fake_github: FakeGitHub, client: Any) -> None:
    fake_github.deny = True
    response = client.get(start_login(client, fake_github))
    assert response.status_code == 403
    assert "denied" in response.json()["detail"]


def test_bad_code(github_settings: Any, fake_github: FakeGitHub, client: Any) -> None:
    callback = start_login(client, fake_github)
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(callback).query))
    response = client.get("/c2c/auth/github/callback", params={"code": "bogus", "state": query["state"]})
    assert response.status_code == 400
    assert "The code passed is incorrect or expired" in response.json()["detail"]
    assert client.get("/c2c/auth/status").json()["is_logged_in"] is False


def test_permission_cache(github_settings: Any, fake_github: FakeGitHub, client: Any) -> None:
    github_settings.auth.github.permission_cache_ttl = timedelta(seconds=0.5)
    github_login(client, fake_github)
    fake_github.hits.clear()
    for _ in range(5):
        assert client.get("/service/admin").status_code == 200
    assert fake_github.hits["repo"] == 1
    time.sleep(0.6)
    assert client.get("/service/admin").status_code == 200
    assert fake_github.hits["repo"] == 2


async def test_permission_cache_concurrent(github_settings: Any, fake_github: FakeGitHub, service: Any) -> None:
    with client_for(service) as sync_client:
        github_login(sync_client, fake_github)
        cookies = dict(sync_client.cookies)
    auth.reset_state()
    fake_github.delay = 0.2  # so the requests overlap
    fake_github.hits.clear()
    transport = httpx.ASGITransport(app=service)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver", cookies=cookies) as client:
        answers = await asyncio.gather(*(client.get("/service/admin") for _ in range(8)))
    assert [answer.status_code for answer in answers] == [200] * 8
    assert fake_github.hits["repo"] == 1


def test_refresh_expiring_token(github_settings: Any, fake_github: FakeGitHub, service: Any) -> None:
    fake_github.access_token_lifetime = 30  # within the 60 s refresh margin
    with client_for(service) as client, client_for(service) as same_browser_other_tab:
        github_login(client, fake_github)
        old_cookie = client.cookies.get("c2c-jwt-auth")
        fake_github.access_token_lifetime = 28800
        response = client.get("/service/admin")
        assert response.status_code == 200
        assert fake_github.hits["refresh"] == 1
        new_cookie = response.cookies.get("c2c-jwt-auth")
        assert new_cookie
        assert new_cookie != old_cookie
        assert jwt_claims(new_cookie)["at_exp"] > jwt_claims(old_cookie)["at_exp"]
        assert client.get("/service/admin").status_code == 200
        assert fake_github.hits["refresh"] == 1

        # GitHub refresh tokens are single use: a request that still carries the old cookie reuses the answer.
        same_browser_other_tab.cookies.set("c2c-jwt-auth", old_cookie, domain="testserver.local", path="/")
        assert same_browser_other_tab.get("/service/admin").status_code == 200
        assert fake_github.hits["refresh"] == 1


def test_refresh_refused_logs_out(github_settings: Any, fake_github: FakeGitHub, client: Any) -> None:
    fake_github.access_token_lifetime = 30
    github_login(client, fake_github)
    fake_github.revoke_all()
    response = client.get("/service/admin")
    assert response.status_code == 401
    assert "max-age=0" in response.headers["set-cookie"].lower()
    assert fake_github.hits["refresh"] == 1


def test_revoked_token_ends_session(github_settings: Any, fake_github: FakeGitHub, client: Any) -> None:
    github_login(client, fake_github)
    fake_github.revoke_all()
    auth.reset_state()  # forget the cached permission so GitHub is asked
    response = client.get("/service/admin")
    assert response.status_code == 401
    assert "GitHub rejected the token" in response.json()["detail"]
    assert "max-age=0" in response.headers["set-cookie"].lower()


@pytest.mark.parametrize(("mode", "retry_after"), [("primary", None), ("secondary", "30")])
def test_github_rate_limit_is_reported(
    github_settings: Any, fake_github: FakeGitHub, client: Any, mode: str, retry_after: str | None
) -> None:
    github_login(client, fake_github)
    auth.reset_state()
    fake_github.rate_limited = mode
    response = client.get("/service/admin")
    assert response.status_code == 503
    assert "rate limit" in response.json()["detail"]
    if retry_after is not None:
        assert response.headers["retry-after"] == retry_after
    else:
        assert 1 <= int(response.headers["retry-after"]) <= 61
    status = client.get("/c2c/auth/status").json()
    assert status["is_admin"] is False
    assert "rate limit" in status["error"]
    assert client.get("/service/has-admin").json() == {"admin": False}


def test_github_failure_is_reported(github_settings: Any, fake_github: FakeGitHub, client: Any) -> None:
    github_login(client, fake_github)
    auth.reset_state()
    fake_github.fail_with = 500
    response = client.get("/service/admin")
    assert response.status_code == 502
    assert "HTTP 500" in response.json()["detail"]


def test_github_timeout_is_bounded(github_settings: Any, fake_github: FakeGitHub, client: Any) -> None:
    github_login(client, fake_github)
    auth.reset_state()
    github_settings.auth.github.timeout = timedelta(seconds=0.3)
    fake_github.delay = 3.0
    started = time.monotonic()
    response = client.get("/service/admin")
    elapsed = time.monotonic() - started
    assert response.status_code == 502
    assert "did not answer" in response.json()["detail"]
    assert elapsed < fake_github.delay  # we did not wait for GitHub


def test_callback_when_github_fails(github_settings: Any, fake_github: FakeGitHub, client: Any) -> None:
    callback = start_login(client, fake_github)
    fake_github.rate_limited = "secondary"
    response = client.get(callback)
    assert response.status_code == 503
    assert "rate limit" in response.json()["detail"]


def test_bearer_github_token(github_settings: Any, fake_github: FakeGitHub, client: Any) -> None:
    token = fake_github.issue_token("octocat")
    headers = {"Authorization": f"Bearer {token}"}
    for _ in range(3):
        assert client.get("/service/admin", headers=headers).status_code == 200
    assert fake_github.hits["user"] == 1
    assert fake_github.hits["repo"] == 1
    status = client.get("/c2c/auth/status", headers=headers)
    assert status.json()["type"] == "github_bearer"
    assert token not in status.text

    for _ in range(3):
        assert client.get("/service/admin", headers={"Authorization": "Bearer ghu_wrong"}).status_code == 401
    assert client.get("/service/admin", headers=headers).status_code == 429


def test_secret_and_github_together(github_settings: Any, fake_github: FakeGitHub, client: Any) -> None:
    github_settings.auth.secret = "a-long-shared-secret-for-the-tests"
    assert client.get("/service/admin", headers={"X-API-Key": "a-long-shared-secret-for-the-tests"}).status_code == 200
    github_login(client, fake_github)
    assert client.get("/service/admin").status_code == 200
    assert client.get("/c2c/auth/status").json()["methods"] == ["secret", "github"]


def test_proxy_url(github_settings: Any, client: Any) -> None:
    github_settings.auth.github.proxy_url = "https://proxy.example/oauth?app=1"
    start = client.get("/c2c/auth/github/login")
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(start.headers["location"]).query))
    assert query["redirect_uri"] == "https://proxy.example/oauth?app=1&" + urllib.parse.urlencode(
        {"came_from": CALLBACK}
    )


def test_github_not_configured(auth_settings: Any, client: Any) -> None:
    response = client.get("/c2c/auth/github/login")
    assert response.status_code == 404
    assert "C2C__AUTH__GITHUB__CLIENT_ID" in response.json()["detail"]


def test_github_logout(github_settings: Any, fake_github: FakeGitHub, client: Any) -> None:
    github_login(client, fake_github)
    response = client.get("/c2c/auth/github/logout", params={"came_from": "/c2c/"})
    assert response.status_code == 303
    assert response.headers["location"] == "/c2c/"
    assert client.get("/service/admin").status_code == 401
