"""Login cookies that must be refused: forged, expired, alg none, algorithm switch, no exp/iat, wrong kind."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest

from c2casgiutils.auth import _cookies, _keys, _session
from tests.auth_fixtures import *  # noqa: F403 # the fixtures
from tests.auth_fixtures import JWT_SECRET, SECRET, jwt_claims, set_cookie_headers
from tests.fake_github import FakeGitHub
from tests.test_auth_github import github_login


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _unsigned(claims: dict[str, Any]) -> str:
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."


def _use(client: Any, token: str) -> Any:
    client.cookies.clear()
    client.cookies.set("c2c-jwt-auth", token, domain="testserver.local", path="/")
    return client.get("/service/admin")


def _now_claims(kind: str, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"kind": kind, "iat": now, "exp": now + 600, **extra}


@pytest.fixture
def secret_settings(auth_settings: Any) -> Any:
    auth_settings.auth.secret = SECRET
    return auth_settings


def _secret_forgeries() -> dict[str, str]:
    key = _session.secret_key()
    now = int(time.time())
    return {
        "wrong key": jwt.encode(_now_claims("secret"), "k" * 64, algorithm="HS256"),
        "key from the secret alone, not stretched": jwt.encode(_now_claims("secret"), SECRET, algorithm="HS256"),
        "expired": _cookies.encode("secret", {}, key, -10),
        "alg none": _unsigned(_now_claims("secret")),
        "algorithm switch": jwt.encode(_now_claims("secret"), key, algorithm="HS512"),
        "no exp": jwt.encode({"kind": "secret", "iat": now}, key, algorithm="HS256"),
        "no iat": jwt.encode({"kind": "secret", "exp": now + 600}, key, algorithm="HS256"),
        "no kind": jwt.encode({"iat": now, "exp": now + 600}, key, algorithm="HS256"),
        "other kind": jwt.encode(_now_claims("state", state="x"), key, algorithm="HS256"),
        "garbage": "not-a-jwt",
    }


@pytest.mark.parametrize(
    "case",
    [
        "wrong key",
        "key from the secret alone, not stretched",
        "expired",
        "alg none",
        "algorithm switch",
        "no exp",
        "no iat",
        "no kind",
        "other kind",
        "garbage",
    ],
)
def test_refused_secret_cookies(secret_settings: Any, client: Any, case: str) -> None:
    # A genuine cookie works (so the refusals below are about the forgery, not the set-up).
    assert _use(client, _cookies.encode("secret", {}, _session.secret_key(), 600)).status_code == 200
    response = _use(client, _secret_forgeries()[case])
    assert response.status_code == 401
    assert "max-age=0" in set_cookie_headers(response)[0].lower()


def test_algorithm_from_settings(secret_settings: Any, client: Any) -> None:
    secret_settings.auth.jwt.algorithm = "HS512"
    client.get("/c2c/auth/login", params={"secret": SECRET})
    token = client.cookies.get("c2c-jwt-auth")
    assert jwt.get_unverified_header(token)["alg"] == "HS512"
    assert client.get("/service/admin").status_code == 200
    # Switching the pinned algorithm back refuses the cookies signed with the other one.
    secret_settings.auth.jwt.algorithm = "HS256"
    assert client.get("/service/admin").status_code == 401


@pytest.mark.parametrize("case", ["wrong key", "alg none", "algorithm switch", "expired", "no exp", "state as session"])
def test_refused_github_cookies(github_settings: Any, fake_github: FakeGitHub, client: Any, case: str) -> None:
    github_login(client, fake_github)
    genuine = client.cookies.get("c2c-jwt-auth")
    assert _use(client, genuine).status_code == 200
    claims = jwt_claims(genuine)
    key = _session.github_key()
    body = {name: value for name, value in claims.items() if name not in ("exp", "iat", "kind")}
    forgeries = {
        "wrong key": jwt.encode(claims, JWT_SECRET, algorithm="HS256"),
        "alg none": _unsigned(claims),
        "algorithm switch": jwt.encode(claims, key, algorithm="HS384"),
        "expired": _cookies.encode("github", body, key, -10),
        "no exp": jwt.encode({**body, "kind": "github", "iat": int(time.time())}, key, algorithm="HS256"),
        "state as session": _cookies.encode("state", {"state": "x", **body}, key, 600),
    }
    response = _use(client, forgeries[case])
    assert response.status_code == 401


def test_tampered_github_cookie(github_settings: Any, fake_github: FakeGitHub, client: Any) -> None:
    github_login(client, fake_github)
    header, payload, signature = client.cookies.get("c2c-jwt-auth").split(".")
    claims = jwt_claims(f"{header}.{payload}.{signature}")
    claims["login"] = "someone-else"
    assert _use(client, f"{header}.{_b64(claims)}.{signature}").status_code == 401


def test_sealed_token_bound_to_login(github_settings: Any, fake_github: FakeGitHub, client: Any) -> None:
    """Even with the signing key, a sealed token cannot be moved to another login."""
    github_login(client, fake_github)
    claims = jwt_claims(client.cookies.get("c2c-jwt-auth"))
    with pytest.raises(_keys.SealError):
        _keys.unseal(claims["at"], JWT_SECRET, "access:someone-else")
    with pytest.raises(_keys.SealError):
        _keys.unseal(claims["at"], JWT_SECRET + "-rotated", "access:octocat")
    body = {name: value for name, value in claims.items() if name not in ("exp", "iat", "kind")}
    moved = _cookies.encode("github", {**body, "login": "someone-else"}, _session.github_key(), 600)
    assert _use(client, moved).status_code == 401


def test_github_cookie_invalid_after_jwt_secret_change(
    github_settings: Any, fake_github: FakeGitHub, client: Any
) -> None:
    github_login(client, fake_github)
    assert client.get("/service/admin").status_code == 200
    github_settings.auth.jwt.secret = JWT_SECRET + "-rotated"
    assert client.get("/service/admin").status_code == 401
