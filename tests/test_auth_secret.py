"""Shared-secret authentication, closed-by-default admin tools, test user, rate limit, start-up checks."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

import pytest

from c2casgiutils import auth, config
from tests.auth_fixtures import *  # noqa: F403 # the fixtures
from tests.auth_fixtures import JWT_SECRET, SECRET, client_for, jwt_claims, set_cookie_headers


@pytest.fixture
def secret_settings(auth_settings: Any) -> Any:
    auth_settings.auth.secret = SECRET
    return auth_settings


def test_closed_when_nothing_configured(auth_settings: Any, client: Any) -> None:
    for headers in ({}, {"X-API-Key": "anything"}, {"Authorization": "Bearer anything"}):
        response = client.get("/service/admin", headers=headers)
        assert response.status_code == 403, headers
        assert "C2C__AUTH__SECRET" in response.json()["detail"]
        assert "C2C__AUTH__GITHUB__CLIENT_ID" in response.json()["detail"]
    status = client.get("/c2c/auth/status").json()
    assert status["auth_type"] == "none"
    assert status["is_logged_in"] is False
    assert status["methods"] == []
    assert auth.is_enabled() is False
    assert auth.auth_type() == auth.AuthenticationType.NONE
    assert client.get("/c2c/auth/login", params={"secret": "x"}).status_code == 403


@pytest.mark.parametrize(
    ("where", "ok"),
    [("x-api-key", True), ("bearer", True), ("query", True), ("x-api-key", False), ("bearer", False), ("query", False)],
)
def test_secret_on_protected_endpoint(secret_settings: Any, client: Any, where: str, ok: bool) -> None:
    value = SECRET if ok else SECRET + "x"
    headers, params = {}, {}
    if where == "x-api-key":
        headers["X-API-Key"] = value
    elif where == "bearer":
        headers["Authorization"] = f"Bearer {value}"
    else:
        params["secret"] = value
    response = client.get("/service/admin", headers=headers, params=params)
    if ok:
        assert response.status_code == 200
        assert response.json() == {"access": "admin"}
    else:
        assert response.status_code == 401
        assert "wrong secret" in response.json()["detail"]
    # Only the login link form (?secret=) leaves a cookie; API calls with a header do not.
    cookies = set_cookie_headers(response)
    assert bool(cookies) == (ok and where == "query")


def test_missing_credentials_is_401(secret_settings: Any, client: Any) -> None:
    response = client.get("/service/admin")
    assert response.status_code == 401
    assert "X-API-Key" in response.json()["detail"]
    assert response.headers["www-authenticate"] == "Bearer"
    assert client.get("/service/logged").status_code == 401


def test_login_cookie_proves_login_without_the_secret(secret_settings: Any, client: Any) -> None:
    response = client.get("/c2c/auth/login", params={"secret": SECRET})
    assert response.status_code == 200
    assert response.json()["status"] == "success"
    (cookie_header,) = set_cookie_headers(response)
    lowered = cookie_header.lower()
    assert "httponly" in lowered
    assert "secure" in lowered
    assert "samesite=lax" in lowered
    assert "path=/;" in lowered or lowered.endswith("path=/")
    token = client.cookies.get("c2c-jwt-auth")
    assert SECRET not in cookie_header
    claims = jwt_claims(token)
    assert SECRET not in str(claims)
    assert claims["kind"] == "secret"
    assert {"exp", "iat"} <= set(claims)
    assert claims["exp"] - claims["iat"] == int(config.settings.auth.jwt.cookie.age.total_seconds())

    assert client.get("/service/admin").status_code == 200
    status = client.get("/c2c/auth/status").json()
    assert status["is_logged_in"] is True
    assert status["type"] == "secret"
    assert status["is_admin"] is True
    assert status["auth_type"] == "secret"
    assert SECRET not in client.get("/c2c/auth/status").text


def test_cookie_flags_follow_settings(secret_settings: Any, client: Any) -> None:
    cookie = secret_settings.auth.jwt.cookie
    cookie.name = "my-auth"
    cookie.same_site = "strict"
    cookie.secure = False
    cookie.path = "/somewhere/"
    cookie.age = timedelta(seconds=120)
    (header,) = set_cookie_headers(client.get("/c2c/auth/login", headers={"X-API-Key": SECRET}))
    lowered = header.lower()
    assert lowered.startswith("my-auth=")
    assert "samesite=strict" in lowered
    assert "secure" not in lowered
    assert "path=/somewhere/" in lowered
    assert "max-age=120" in lowered


def test_default_cookie_path_is_the_c2c_index(secret_settings: Any, client: Any) -> None:
    secret_settings.auth.jwt.cookie.path = None
    (header,) = set_cookie_headers(client.get("/c2c/auth/login", params={"secret": SECRET}))
    assert "path=/c2c/" in header.lower()


def test_post_login_form_and_json(secret_settings: Any, client: Any) -> None:
    response = client.post("/c2c/auth/login", data={"secret": SECRET, "came_from": "/c2c/"})
    assert response.status_code == 303
    assert response.headers["location"] == "/c2c/"
    assert client.get("/service/admin").status_code == 200

    client.cookies.clear()
    response = client.post("/c2c/auth/login", json={"secret": SECRET})
    assert response.status_code == 200
    assert client.get("/service/admin").status_code == 200

    assert client.post("/c2c/auth/login", json={"secret": "nope"}).status_code == 401
    assert client.post("/c2c/auth/login", json={}).status_code == 400
    assert client.post("/c2c/auth/login", json=["x"]).status_code == 400
    assert client.post("/c2c/auth/login", json={"secret": 12}).status_code == 400
    assert (
        client.post("/c2c/auth/login", content=b"{not json", headers={"content-type": "application/json"}).status_code
        == 400
    )
    assert client.post("/c2c/auth/login", content=b"x", headers={"content-type": "text/plain"}).status_code == 415
    too_big = b"secret=" + b"a" * 20_000
    assert (
        client.post(
            "/c2c/auth/login", content=too_big, headers={"content-type": "application/x-www-form-urlencoded"}
        ).status_code
        == 413
    )


def test_logout(secret_settings: Any, client: Any) -> None:
    client.get("/c2c/auth/login", params={"secret": SECRET})
    assert client.get("/service/admin").status_code == 200
    response = client.get("/c2c/auth/logout")
    assert response.status_code == 200
    assert "max-age=0" in set_cookie_headers(response)[0].lower()
    assert client.get("/service/admin").status_code == 401
    client.get("/c2c/auth/login", params={"secret": SECRET})
    response = client.post("/c2c/auth/logout", params={"came_from": "/c2c/"})
    assert response.status_code == 303
    assert client.get("/service/admin").status_code == 401


def test_cookie_invalid_after_secret_change(secret_settings: Any, client: Any) -> None:
    client.get("/c2c/auth/login", params={"secret": SECRET})
    assert client.get("/service/admin").status_code == 200
    secret_settings.auth.secret = SECRET + "-rotated"
    response = client.get("/service/admin")
    assert response.status_code == 401
    # The stale cookie is deleted.
    assert "max-age=0" in set_cookie_headers(response)[0].lower()
    assert client.get("/service/admin", headers={"X-API-Key": SECRET + "-rotated"}).status_code == 200


def test_cookie_invalid_after_jwt_secret_change(secret_settings: Any, client: Any) -> None:
    secret_settings.auth.jwt.secret = JWT_SECRET
    client.get("/c2c/auth/login", params={"secret": SECRET})
    assert client.get("/service/admin").status_code == 200
    secret_settings.auth.jwt.secret = JWT_SECRET + "-rotated"
    assert client.get("/service/admin").status_code == 401


def test_rate_limit_failed_attempts(secret_settings: Any, service: Any) -> None:
    secret_settings.auth.rate_limit.max_failures = 3
    secret_settings.auth.rate_limit.window = timedelta(seconds=0.5)
    with client_for(service, host="10.1.1.1") as attacker, client_for(service, host="10.1.1.2") as other:
        for _ in range(3):
            assert attacker.get("/service/admin", headers={"X-API-Key": "guess"}).status_code == 401
        blocked = attacker.get("/service/admin", headers={"X-API-Key": SECRET})
        assert blocked.status_code == 429
        assert int(blocked.headers["retry-after"]) >= 1
        assert attacker.get("/c2c/auth/login", params={"secret": SECRET}).status_code == 429
        assert attacker.post("/c2c/auth/login", json={"secret": SECRET}).status_code == 429
        # Another client is not affected.
        assert other.get("/service/admin", headers={"X-API-Key": SECRET}).status_code == 200
        # has_admin_access never raises, even for a blocked client.
        assert attacker.get("/service/has-admin", headers={"X-API-Key": SECRET}).json() == {"admin": False}
        time.sleep(0.6)
        assert attacker.get("/service/admin", headers={"X-API-Key": SECRET}).status_code == 200


def test_login_endpoint_failures_count(secret_settings: Any, client: Any) -> None:
    for _ in range(3):
        assert client.post("/c2c/auth/login", data={"secret": "guess"}).status_code == 401
    assert client.get("/c2c/auth/login", params={"secret": SECRET}).status_code == 429


def test_has_admin_access(secret_settings: Any, client: Any) -> None:
    assert client.get("/service/has-admin").json() == {"admin": False}
    assert client.get("/service/has-admin", headers={"X-API-Key": SECRET}).json() == {"admin": True}


def test_access_context_with_secret(secret_settings: Any, client: Any) -> None:
    assert client.get("/service/context", headers={"X-API-Key": SECRET}).json() == {
        "login": "",
        "read_only": True,
        "read_write": True,
    }
    assert client.get("/service/context").json() == {"login": "", "read_only": False, "read_write": False}
    # require_access(AuthConfig(...)): the secret grants every access.
    assert client.get("/service/push", headers={"X-API-Key": SECRET}).status_code == 200
    assert client.get("/service/push").status_code == 401


def test_test_user_logs_everyone_in(auth_settings: Any, client: Any, caplog: Any) -> None:
    auth_settings.auth.test.username = "developer"
    with caplog.at_level(logging.WARNING):
        auth.check_settings()
    assert any("C2C__AUTH__TEST__USERNAME" in record.getMessage() for record in caplog.records)
    assert auth.auth_type() == auth.AuthenticationType.TEST
    assert client.get("/service/admin").status_code == 200
    status = client.get("/c2c/auth/status").json()
    assert status["type"] == "test"
    assert status["user"]["login"] == "developer"
    assert status["is_admin"] is True


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"client_id": "id", "client_secret": "s", "repository": "o/r"}, "needs C2C__AUTH__JWT__SECRET"),
        ({"client_id": "id", "client_secret": "s", "repository": "o/r", "jwt": "short"}, "at least 32 bytes"),
        ({"client_id": "id"}, "partly configured"),
        ({"secret": ""}, "C2C__AUTH__SECRET is set but empty"),
        ({"same_site_none": True}, "SAME_SITE=none needs"),
    ],
)
def test_unsafe_settings_stop_start_up(auth_settings: Any, change: dict[str, Any], message: str) -> None:
    github = auth_settings.auth.github
    github.client_id = change.get("client_id")
    github.client_secret = change.get("client_secret")
    github.repository = change.get("repository")
    auth_settings.auth.jwt.secret = change.get("jwt")
    if "secret" in change:
        auth_settings.auth.secret = change["secret"]
    if change.get("same_site_none"):
        auth_settings.auth.jwt.cookie.same_site = "none"
        auth_settings.auth.jwt.cookie.secure = False
    with pytest.raises(config.SettingsError, match=message):
        auth.check_settings()


def test_safe_settings_start(auth_settings: Any) -> None:
    auth.check_settings()
    auth_settings.auth.secret = SECRET
    auth.check_settings()
    auth_settings.auth.secret = None
    auth_settings.auth.github.client_id = "id"
    auth_settings.auth.github.client_secret = "s"
    auth_settings.auth.github.repository = "o/r"
    auth_settings.auth.jwt.secret = JWT_SECRET
    auth.check_settings()
    assert auth.auth_type() == auth.AuthenticationType.GITHUB
