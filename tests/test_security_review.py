"""Adversarial review of auth, forwarded headers, request ids, error pages, the headers tool and broadcast signing.

Each test plays one attack through real requests (TestClient/ASGI, real Redis for broadcast) and asserts the
defence holds; the ones marked "regression" failed before the fix they come with.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import unicodedata
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
import redis
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient

from c2casgiutils import auth, broadcast, redis_utils, request_id
from c2casgiutils.auth import _cookies, _session
from c2casgiutils.auth._limiter._local import MAX_CLIENTS, LocalFailureLimiter
from c2casgiutils.broadcast import _signing
from c2casgiutils.errors import ErrorResponseMiddleware, install_error_handlers
from c2casgiutils.headers import ForwardedHeadersMiddleware
from tests.auth_fixtures import *  # noqa: F403 # the fixtures
from tests.auth_fixtures import JWT_SECRET, SECRET, client_for, make_service, set_cookie_headers
from tests.fake_github import FakeGitHub

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def secret_settings(auth_settings: Any) -> Any:
    auth_settings.auth.secret = SECRET
    return auth_settings


def security_service() -> FastAPI:
    """The auth test service plus a state-changing route, an error route, behind the forwarded middleware."""
    app = make_service()

    @app.post("/service/change", dependencies=[Depends(auth.require_admin_access)])
    async def change() -> dict[str, str]:
        return {"changed": "yes"}

    @app.get("/service/client")
    async def client_address(request: Request) -> dict[str, Any]:
        return {"client": request.client.host if request.client else None}

    @app.api_route("/service/boom", methods=["GET", "POST"])
    async def boom() -> None:
        raise RuntimeError("internal detail: db password is hunter2")

    install_error_handlers(app)
    app.add_middleware(request_id.RequestIdMiddleware)
    app.add_middleware(ForwardedHeadersMiddleware, trusted_hosts="127.0.0.1")
    return app


@pytest.fixture
def sec_client() -> Iterator[TestClient]:
    with client_for(security_service(), host="203.0.113.9") as test_client:
        yield test_client


def login_cookie(client: TestClient) -> str:
    response = client.get("/c2c/auth/login", params={"secret": SECRET})
    assert response.status_code == 200
    cookie = client.cookies.get("c2c-jwt-auth")
    assert cookie
    return cookie


def with_cookie(app: FastAPI, cookie: str, name: str = "c2c-jwt-auth", host: str = "203.0.113.9") -> TestClient:
    """A fresh browser holding only ``name=cookie``."""
    client = client_for(app, host=host)
    client.cookies.set(name, cookie)
    return client


# ------------------------------------------------------------------------------------------ JWT cookie attacks


def _now_claims(kind: str, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"kind": kind, "iat": now, "exp": now + 600, **extra}


def _b64(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _forged_secret_cookies(valid: str) -> dict[str, str]:
    key = _session.secret_key()
    header, payload, signature = valid.split(".")
    claims = json.loads(_b64_decode(payload))
    tampered_payload = _b64(json.dumps({**claims, "exp": claims["exp"] + 10**6}).encode())
    now = int(time.time())
    return {
        "alg none": jwt.encode(_now_claims("secret"), "", algorithm="none"),
        "alg none, no signature dot": _b64(b'{"alg":"none","typ":"JWT"}') + "." + _b64(b'{"kind":"secret"}'),
        "algorithm switch HS512 with the right key": jwt.encode(_now_claims("secret"), key, algorithm="HS512"),
        "signature stripped": f"{header}.{payload}.",
        "tampered payload": f"{header}.{tampered_payload}.{signature}",
        "wrong key with jku/kid headers": jwt.encode(
            _now_claims("secret"),
            b"attacker-key-attacker-key-attacker-key!",
            algorithm="HS256",
            headers={"kid": "../../dev/null", "jku": "https://evil.example/jwks.json"},
        ),
        "right key, no exp": jwt.encode({"kind": "secret", "iat": now}, key, algorithm="HS256"),
        "right key, no iat": jwt.encode({"kind": "secret", "exp": now + 600}, key, algorithm="HS256"),
        "right key, no kind": jwt.encode({"iat": now, "exp": now + 600}, key, algorithm="HS256"),
        "right key, iat in the far future": jwt.encode(
            {"kind": "secret", "iat": now + 10**8, "exp": now + 10**8 + 600}, key, algorithm="HS256"
        ),
        "right key, expired": jwt.encode(
            {"kind": "secret", "iat": now - 700, "exp": now - 100}, key, algorithm="HS256"
        ),
        "right key, kind state": jwt.encode(_now_claims("state"), key, algorithm="HS256"),
        "right key, kind github": jwt.encode(_now_claims("github"), key, algorithm="HS256"),
        "very long": valid + "A" * 60_000,
        "non-ASCII": valid[:-3] + "\u00e9\u00e9\u00e9",
        "empty segments": "..",
    }


def _b64_decode(segment: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def test_forged_secret_cookies_are_refused(secret_settings: Any) -> None:
    app = security_service()
    with client_for(app) as browser:
        valid = login_cookie(browser)
    with with_cookie(app, valid) as control:
        assert control.get("/service/admin").status_code == 200  # the genuine cookie works
    for name, forged in _forged_secret_cookies(valid).items():
        with client_for(app) as attacker:
            # Set as a raw header: TestClient's cookie jar would refuse some of the values.
            response = attacker.get("/service/admin", headers={b"Cookie": f"c2c-jwt-auth={forged}".encode()})
            assert response.status_code == 401, (name, response.text)
            # The bad cookie is deleted, and never counted as a login.
            assert any(header.startswith('c2c-jwt-auth=""') for header in set_cookie_headers(response)), name
            assert (
                attacker.get("/c2c/auth/status", headers={b"Cookie": f"c2c-jwt-auth={forged}".encode()}).json()[
                    "is_logged_in"
                ]
                is False
            )


def test_state_and_session_cookies_cannot_stand_in_for_each_other(
    github_settings: Any, fake_github: FakeGitHub
) -> None:
    app = security_service()
    with client_for(app) as browser:
        start = browser.get("/c2c/auth/github/login")
        state_cookie = browser.cookies.get("c2c-state")
        assert state_cookie
        answer = httpx.get(start.headers["location"], follow_redirects=False, timeout=5)
        callback = browser.get(answer.headers["location"])
        assert callback.status_code == 303
        session_cookie = browser.cookies.get("c2c-jwt-auth")
        assert session_cookie
        assert browser.get("/service/admin").status_code == 200
    # The state cookie (same signing key as the session) as the login cookie: refused by its kind.
    with with_cookie(app, state_cookie) as attacker:
        assert attacker.get("/service/admin").status_code == 401
    # The session cookie as a state cookie: the callback refuses it.
    state = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(start.headers["location"]).query))["state"]
    with with_cookie(app, session_cookie, name="c2c-state") as attacker:
        response = attacker.get("/c2c/auth/github/callback", params={"state": state, "code": "x"})
        assert response.status_code == 400
        assert "expected a state cookie" in response.json()["detail"]


def test_cookie_of_one_auth_kind_is_refused_by_the_other(secret_settings: Any, fake_github: FakeGitHub) -> None:
    app = security_service()
    # A GitHub session cookie signed with the GitHub key is worthless where only the secret is configured.
    secret_settings.auth.jwt.secret = JWT_SECRET
    github_cookie = _cookies.encode("github", {"login": "octocat", "at": "x"}, _session.github_key(), 600)
    with with_cookie(app, github_cookie) as attacker:
        assert attacker.get("/service/admin").status_code == 401
    # A secret login cookie stops working when GitHub replaces the secret.
    with client_for(app) as browser:
        secret_cookie = login_cookie(browser)
    secret_settings.auth.secret = None
    fake_github.configure(secret_settings, "camptocamp/secret-repo")
    with with_cookie(app, secret_cookie) as holder:
        assert holder.get("/service/admin").status_code == 401


# ------------------------------------------------------------------------------------------------ the secret


def test_secret_comparison_does_not_depend_on_the_candidate_length(
    secret_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: compare_digest on raw values of different lengths answers at once (it leaks the length)."""
    compared: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # the module _access calls
    app = security_service()
    with client_for(app) as client:
        for candidate in ("x", SECRET[:-1], SECRET + "x" * 100, SECRET):
            client.get("/service/admin", headers={"X-API-Key": candidate})
            client.post("/c2c/auth/login", data={"secret": candidate})
            auth.reset_state()
    assert len(compared) == 8
    assert {a for a, _ in compared} == {b for _, b in compared} == {32}


def test_secret_is_not_unicode_normalised(secret_settings: Any) -> None:
    composed = "p\u00e4ssword-with-a-long-tail-" + SECRET
    secret_settings.auth.secret = composed
    decomposed = unicodedata.normalize("NFD", composed)
    assert decomposed != composed
    with client_for(security_service()) as client:
        assert client.post("/c2c/auth/login", json={"secret": decomposed}).status_code == 401
        assert client.post("/c2c/auth/login", json={"secret": composed}).status_code == 200


def test_secret_never_in_our_log_lines(secret_settings: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG), client_for(security_service()) as client:
        for value in (SECRET, SECRET + "-wrong"):
            client.get("/c2c/auth/login", params={"secret": value})
            client.get("/service/admin", params={"secret": value})
            client.get("/service/admin", headers={"X-API-Key": value})
            client.post("/c2c/auth/login", data={"secret": value})
            client.get("/service/boom", params={"secret": value})
            auth.reset_state()
    # Our loggers only: the test client's own httpx log shows the URL it requested.
    ours = [record for record in caplog.records if record.name.startswith("c2casgiutils")]
    lines = [record.getMessage() + str(record.args) + (record.exc_text or "") for record in ours]
    # The failures were recorded (audit records: their fields too)...
    assert any(getattr(record, "outcome", None) == "failure" for record in ours)
    fields = [str(vars(record)) for record in ours if record.name == "c2casgiutils.audit"]
    assert not [line for line in lines + fields if SECRET in line]  # ...without the secret


# ------------------------------------------------------------------------------------------------ rate limit


def test_x_forwarded_for_from_an_untrusted_peer_does_not_escape_the_rate_limit(secret_settings: Any) -> None:
    with client_for(security_service(), host="203.0.113.9") as client:
        for index in range(3):
            response = client.get(
                "/service/admin", headers={"X-API-Key": f"guess-{index}", "X-Forwarded-For": f"198.51.100.{index}"}
            )
            assert response.status_code == 401
        blocked = client.get("/service/admin", headers={"X-API-Key": SECRET, "X-Forwarded-For": "198.51.100.77"})
        assert blocked.status_code == 429
        assert int(blocked.headers["retry-after"]) >= 1


def test_spoofed_left_entries_behind_a_trusted_proxy_do_not_escape_the_rate_limit(secret_settings: Any) -> None:
    with client_for(security_service(), host="127.0.0.1") as proxy:
        for index in range(3):
            proxy.get(
                "/service/admin",
                headers={"X-API-Key": f"guess-{index}", "X-Forwarded-For": f"198.51.100.{index}, 203.0.113.9"},
            )
        assert (
            proxy.get("/service/admin", headers={"X-API-Key": "x", "X-Forwarded-For": "203.0.113.9"}).status_code == 429
        )
        # Another client behind the same proxy is not affected.
        assert (
            proxy.get("/service/admin", headers={"X-API-Key": SECRET, "X-Forwarded-For": "192.0.2.1"}).status_code
            == 200
        )


def test_oversized_x_forwarded_for_is_counted_against_the_real_client(secret_settings: Any) -> None:
    """Regression: an over-long list was ignored, so the request looked sent by the trusted proxy itself."""
    padding = ", ".join(["127.0.0.1"] * 1000)
    with client_for(security_service(), host="127.0.0.1") as proxy:
        seen = proxy.get("/service/client", headers={"X-Forwarded-For": f"{padding}, 203.0.113.9"}).json()
        assert seen == {"client": "203.0.113.9"}
        for index in range(3):
            proxy.get(
                "/service/admin", headers={"X-API-Key": f"g{index}", "X-Forwarded-For": f"{padding}, 203.0.113.9"}
            )
        assert (
            proxy.get("/service/admin", headers={"X-API-Key": "x", "X-Forwarded-For": "203.0.113.9"}).status_code == 429
        )
        assert (
            proxy.get("/service/admin", headers={"X-API-Key": SECRET, "X-Forwarded-For": "192.0.2.1"}).status_code
            == 200
        )


def test_many_distinct_bogus_credentials_are_all_counted(secret_settings: Any) -> None:
    with client_for(security_service()) as client:
        assert client.get("/service/admin", headers={"X-API-Key": "a"}).status_code == 401
        assert client.get("/service/admin", headers={"Authorization": "Bearer b"}).status_code == 401
        assert client.post("/c2c/auth/login", json={"secret": "c"}).status_code == 401
        # Blocked on every channel, even with the right secret.
        assert client.get("/service/admin", params={"secret": SECRET}).status_code == 429
        assert client.post("/c2c/auth/login", data={"secret": SECRET}).status_code == 429
        assert client.get("/c2c/auth/login", headers={"X-API-Key": SECRET}).status_code == 429


def test_a_successful_login_does_not_reset_the_failure_counter(secret_settings: Any) -> None:
    with client_for(security_service()) as client:
        for index in range(2):
            assert client.get("/service/admin", headers={"X-API-Key": f"g{index}"}).status_code == 401
        assert client.get("/service/admin", headers={"X-API-Key": SECRET}).status_code == 200
        assert client.get("/service/admin", headers={"X-API-Key": "g3"}).status_code == 401
        assert client.get("/service/admin", headers={"X-API-Key": SECRET}).status_code == 429


def test_an_ipv6_client_is_counted_per_64_network(secret_settings: Any) -> None:
    """Regression: each of the 2**64 addresses of one IPv6 client had its own counter."""
    app = security_service()
    for index in range(3):
        with client_for(app, host=f"2001:db8:0:7::{index + 1:x}") as client:
            assert client.get("/service/admin", headers={"X-API-Key": f"g{index}"}).status_code == 401
    with client_for(app, host="2001:db8:0:7:ffff:ffff:ffff:fffe") as client:
        assert client.get("/service/admin", headers={"X-API-Key": SECRET}).status_code == 429
    with client_for(app, host="2001:db8:0:8::1") as neighbour:
        assert neighbour.get("/service/admin", headers={"X-API-Key": SECRET}).status_code == 200


def test_an_ipv4_mapped_peer_shares_the_counter_of_its_ipv4_address(secret_settings: Any) -> None:
    app = security_service()
    for host in ("::ffff:198.51.100.4", "198.51.100.4", "::ffff:198.51.100.4"):
        with client_for(app, host=host) as client:
            assert client.get("/service/admin", headers={"X-API-Key": "guess"}).status_code == 401
    with client_for(app, host="198.51.100.4") as client:
        assert client.get("/service/admin", headers={"X-API-Key": SECRET}).status_code == 429


def test_the_limiter_memory_is_bounded_under_many_clients() -> None:
    limiter = LocalFailureLimiter(max_failures=3, window=60)

    async def fail_everywhere() -> list[float | None]:
        answers = []
        for index in range(MAX_CLIENTS + 5000):
            for _ in range(10):
                answers.append(await limiter.add_failure(f"10.{index >> 16 & 255}.{index >> 8 & 255}.{index & 255}"))
        return answers

    answers = asyncio.run(fail_everywhere())
    assert answers.count(None) == 3 * (MAX_CLIENTS + 5000)  # 3 counted per client, the 7 others refused
    assert limiter.clients() == MAX_CLIENTS
    # The least recently failing clients were forgotten first; the last ones are still blocked.
    assert asyncio.run(limiter.retry_after("10.0.0.0")) is None
    assert asyncio.run(limiter.retry_after(f"10.0.{(MAX_CLIENTS + 4999) >> 8 & 255}.{(MAX_CLIENTS + 4999) & 255}"))


def test_bogus_github_bearer_tokens_do_not_hammer_github(github_settings: Any, fake_github: FakeGitHub) -> None:
    with client_for(security_service()) as client:
        statuses = [
            client.get("/service/admin", headers={"Authorization": f"Bearer ghp_bogus{index}"}).status_code
            for index in range(10)
        ]
    assert statuses == [401, 401, 401] + [429] * 7
    assert fake_github.hits["user"] == 3


# ------------------------------------------------------------------------------------------------- came_from

REFUSED_CAME_FROM = [
    "/\\evil.example",
    "\\\\evil.example",
    "%2F%2Fevil.example",
    "https:evil.example",
    "https:/evil.example",
    "http:///evil.example",
    "///evil.example",
    "//evil.example@testserver",
    "//evil.example",
    "https://testserver@evil.example/",
    "https://evil.example\\@testserver/",
    "https://evil.example#@testserver/",
    "/\t/evil.example",
    "/\n/evil.example",
    "/\r\n/evil.example",
    " //evil.example",
    "\x00//evil.example",
    "java\tscript:alert(1)",
    "javascript:alert(1)",
    "JAVASCRIPT:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "https://evil.example/",
    "https://testserver.evil.example/",
    "https://t\u0435stserver/",  # Cyrillic e
    "https://xn--tstserver-2ig/",
    "https://testserver:4443/",
    "http://testserver/c2c",  # regression: same host, but out of HTTPS
    "ftp://testserver/",
    "relative/path",
]


@pytest.mark.parametrize("came_from", REFUSED_CAME_FROM)
def test_came_from_open_redirect_variants_are_refused(secret_settings: Any, came_from: str) -> None:
    with client_for(security_service()) as client:
        for response in (
            client.get("/c2c/auth/login", params={"secret": SECRET, "came_from": came_from}),
            client.post("/c2c/auth/login", data={"secret": SECRET, "came_from": came_from}),
            client.get("/c2c/auth/logout", params={"came_from": came_from}),
        ):
            assert response.status_code == 400, (came_from, response.status_code)
            assert "location" not in response.headers
            assert "Invalid 'came_from'" in response.json()["detail"]
        assert client.cookies.get("c2c-jwt-auth") is None  # refused before the login


@pytest.mark.parametrize(
    "came_from",
    ["/c2c/logging", "/%2F%2Fevil.example", "/a?next=//evil.example", "https://testserver/c2c", "HTTPS://TESTSERVER/x"],
)
def test_accepted_came_from_stays_on_this_host(secret_settings: Any, came_from: str) -> None:
    with client_for(security_service()) as client:
        response = client.get("/c2c/auth/login", params={"secret": SECRET, "came_from": came_from})
    assert response.status_code == 303
    location = response.headers["location"]
    target = urllib.parse.urlsplit(urllib.parse.urljoin("https://testserver/c2c/auth/login", location))
    assert (target.scheme, target.netloc.lower()) == ("https", "testserver")
    assert not location.startswith("//")
    assert "\\" not in location


def test_came_from_of_the_github_login_is_checked_before_the_redirect(github_settings: Any) -> None:
    with client_for(security_service()) as client:
        for came_from in ("//evil.example", "http://testserver/", "javascript:alert(1)"):
            response = client.get("/c2c/auth/github/login", params={"came_from": came_from})
            assert response.status_code == 400
            assert client.cookies.get("c2c-state") is None


# ------------------------------------------------------------------------------------------------ GitHub OAuth


def _start(client: TestClient) -> tuple[str, str]:
    """Start a login; return (the callback URL GitHub sends back to, the state cookie)."""
    start = client.get("/c2c/auth/github/login")
    answer = httpx.get(start.headers["location"], follow_redirects=False, timeout=5)
    return answer.headers["location"], client.cookies.get("c2c-state") or ""


def test_oauth_callback_replay_after_success(github_settings: Any, fake_github: FakeGitHub) -> None:
    app = security_service()
    with client_for(app) as browser:
        callback, state_cookie = _start(browser)
        assert browser.get(callback).status_code == 303
        assert browser.cookies.get("c2c-state") is None  # deleted by the callback
    # An attacker who captured the URL and the state cookie replays them: GitHub's code is single use.
    with with_cookie(app, state_cookie, name="c2c-state") as attacker:
        response = attacker.get(callback)
        assert response.status_code == 400
        assert "bad_verification_code" in response.json()["detail"]
        assert attacker.cookies.get("c2c-jwt-auth") is None


def test_oauth_state_of_another_browser_is_refused(github_settings: Any, fake_github: FakeGitHub) -> None:
    app = security_service()
    with client_for(app) as victim, client_for(app) as attacker:
        attacker_callback, _ = _start(attacker)
        _start(victim)  # the victim has a state cookie of their own
        # Login CSRF: the attacker makes the victim's browser open the attacker's callback.
        response = victim.get(attacker_callback)
        assert response.status_code == 400
        assert "state mismatch" in response.json()["detail"]
        assert victim.cookies.get("c2c-jwt-auth") is None
        # Without any state cookie it is refused too.
        with client_for(app) as fresh:
            assert fresh.get(attacker_callback).status_code == 400
    assert fake_github.hits["token"] == 0  # GitHub is not even asked


def test_oauth_error_parameter_cannot_forge_log_lines(
    github_settings: Any, fake_github: FakeGitHub, caplog: pytest.LogCaptureFixture
) -> None:
    """Regression: error_description from the query string went verbatim into the log line."""
    with client_for(security_service()) as client, caplog.at_level(logging.INFO, logger="c2casgiutils.audit"):
        callback, _ = _start(client)
        state = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(callback).query))["state"]
        response = client.get(
            "/c2c/auth/github/callback",
            params={"state": state, "error": "access_denied", "error_description": "x\r\nINFO forged: admin logged in"},
        )
        assert response.status_code == 403
        assert "GitHub refused the login" in response.json()["detail"]
        # The error parameter alone (no state) does not reach the logic.
        assert client.get("/c2c/auth/github/callback", params={"error": "access_denied"}).status_code == 400
    failures = [
        record for record in caplog.records if record.name == "c2casgiutils.audit" and record.outcome == "failure"
    ]
    assert len(failures) == 2  # one audit record per callback
    assert "forged" in failures[0].reason  # the text is a field of the record (escaped by the JSON formatter)...
    assert not [record for record in failures if "\n" in record.getMessage() or "\r" in record.getMessage()]


def test_github_tokens_never_logged_or_sent(
    github_settings: Any, fake_github: FakeGitHub, caplog: pytest.LogCaptureFixture
) -> None:
    bodies: list[str] = []
    with caplog.at_level(logging.DEBUG), client_for(security_service()) as client:
        callback, _ = _start(client)
        responses = [client.get(callback), client.get("/c2c/auth/status"), client.get("/service/admin")]
        responses.append(client.get("/service/context"))
        bodies = [response.text + str(response.headers) for response in responses]
        cookies = [client.cookies.get("c2c-jwt-auth") or ""]
    tokens = fake_github.known_tokens()
    assert tokens
    logged = "\n".join(record.getMessage() + str(record.args) for record in caplog.records)
    for token in tokens:
        assert token not in logged
        assert not [body for body in bodies if token in body]
        assert not [cookie for cookie in cookies if token in cookie]
        assert token not in "".join(_b64_decode(part).decode("latin-1") for part in cookies[0].split(".")[:2])


# ------------------------------------------------------------------------------------------------------- CSRF


@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        ({}, True),  # not a browser (curl, scripts): nothing another site could abuse
        ({"Sec-Fetch-Site": "same-origin", "Origin": "https://testserver"}, True),
        ({"Origin": "https://testserver"}, True),  # older browsers send only Origin
        ({"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, False),
        ({"Sec-Fetch-Site": "same-site", "Origin": "https://sibling.testserver"}, False),
        ({"Origin": "https://evil.example"}, False),
        ({"Origin": "null"}, False),  # sandboxed iframe, data: URL
    ],
)
def test_cookie_authenticated_unsafe_requests_must_come_from_this_site(
    secret_settings: Any, headers: dict[str, str], allowed: bool
) -> None:
    """Regression: a form POST from another site carrying the login cookie changed state (SameSite=lax stops
    cross-site ones, not same-site sibling domains, and SAME_SITE=none stops nothing)."""
    app = security_service()
    with client_for(app) as browser:
        cookie = login_cookie(browser)
    with with_cookie(app, cookie) as browser:
        response = browser.post("/service/change", headers=headers)
        assert response.status_code == (200 if allowed else 401), response.text
        if not allowed:
            assert "cross-site" in response.json()["detail"]
            # The admin tools' own state-changing endpoints are covered the same way.
            assert browser.delete("/c2c/logging/overrides/app", headers=headers).status_code == 401
            # Safe methods and header credentials are not affected.
            assert browser.get("/service/admin", headers=headers).status_code == 200
            assert browser.post("/service/change", headers={**headers, "X-API-Key": SECRET}).status_code == 200


def test_cross_site_post_does_not_get_the_traceback(secret_settings: Any) -> None:
    app = security_service()
    with client_for(app) as browser:
        cookie = login_cookie(browser)
    with with_cookie(app, cookie) as browser:
        same_site = browser.post("/service/boom", headers={"Sec-Fetch-Site": "same-origin"})
        cross_site = browser.post("/service/boom", headers={"Sec-Fetch-Site": "cross-site"})
    assert same_site.status_code == cross_site.status_code == 500
    assert "traceback" in same_site.json()
    assert "traceback" not in cross_site.json()


# --------------------------------------------------------------------------------------------------- forwarded

PROXY = ("10.0.0.5", 40000)


def run_forwarded(
    headers: list[tuple[bytes, bytes]],
    peer: tuple[str, int] = PROXY,
    trusted: str = "10.0.0.5",
    kind: Any = "x-forwarded",
) -> dict[str, Any]:
    """Call the middleware as a server would (raw header bytes, even ones httpx refuses to send)."""
    received: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        received.append(scope)

    middleware = ForwardedHeadersMiddleware(app, trusted_hosts=trusted, headers_type=kind)
    scope = {
        "type": "http",
        "method": "GET",
        "scheme": "http",
        "path": "/where",
        "raw_path": b"/where",
        "root_path": "",
        "query_string": b"",
        "server": ("internal", 8080),
        "client": peer,
        "headers": [(b"host", b"internal:8080"), *headers],
    }
    asyncio.run(middleware(scope, None, None))  # type: ignore[arg-type]
    return received[0]


def _host(scope: dict[str, Any]) -> bytes:
    (value,) = [value for name, value in scope["headers"] if name == b"host"]
    return bytes(value)


@pytest.mark.parametrize(
    "value",
    [
        b"evil.example@good.example",
        b"good.example/evil",
        b"good.example evil",
        b"good.example\r\nX-Injected: 1",
        b"good.example\nX-Injected: 1",
        b"good.example\x00",
        b"a" * 10_000,
        b"good.example:80@evil.example",
        b"[::1]@evil.example",
        b"\xc3\xa9vil.example",
    ],
)
def test_x_forwarded_host_injection_is_ignored(value: bytes) -> None:
    scope = run_forwarded([(b"x-forwarded-host", value)])
    assert _host(scope) == b"internal:8080"
    assert scope["server"] == ("internal", 8080)


def test_several_x_forwarded_host_headers_take_the_proxys_value() -> None:
    scope = run_forwarded(
        [
            (b"x-forwarded-host", b"evil.example"),
            (b"x-forwarded-host", b"good.example"),
            (b"x-forwarded-for", b"192.0.2.1"),
        ]
    )
    assert _host(scope) == b"good.example"
    assert scope["client"] == ("192.0.2.1", 0)


def test_forwarded_headers_from_an_untrusted_peer_are_ignored() -> None:
    scope = run_forwarded(
        [(b"x-forwarded-for", b"127.0.0.1"), (b"x-forwarded-host", b"evil.example"), (b"x-forwarded-proto", b"https")],
        peer=("192.0.2.66", 1),
    )
    assert scope["client"] == ("192.0.2.66", 1)
    assert _host(scope) == b"internal:8080"
    assert scope["scheme"] == "http"


def test_trust_all_never_lets_the_client_choose_its_address() -> None:
    """trusted_hosts='*' trusts every peer, but the lists are still read ``hops`` places from the right."""
    scope = run_forwarded([(b"x-forwarded-for", b"6.6.6.6, 127.0.0.1")], peer=("192.0.2.66", 1), trusted="*")
    assert scope["client"] == ("127.0.0.1", 0)


@pytest.mark.parametrize(
    ("peer", "trusted", "rewritten"),
    [
        ("::ffff:127.0.0.1", "127.0.0.1", True),
        ("::ffff:10.0.0.5", "10.0.0.0/8", True),
        ("10.255.255.255", "10.0.0.0/8", True),
        ("11.0.0.0", "10.0.0.0/8", False),
        ("9.255.255.255", "10.0.0.0/8", False),
        ("10.0.0.5", "10.0.0.5/32", True),
        ("10.0.0.6", "10.0.0.5/32", False),
        ("10.0.0.6", "10.0.0.5/31", False),  # strict=False normalises to 10.0.0.4/31
        ("10.0.0.4", "10.0.0.5/31", True),
        ("2001:db8::ffff", "2001:db8::/112", True),
        ("2001:db8::1:0", "2001:db8::/112", False),
        ("::ffff:127.0.0.1", "::ffff:127.0.0.1", False),  # networks are compared as IPv4 for mapped peers
        ("127.0.0.1 ", "127.0.0.1", False),
        ("localhost", "127.0.0.1", False),
        ("unix:/tmp/sock", "*", True),
    ],
)
def test_trusted_proxy_address_edges(peer: str, trusted: str, rewritten: bool) -> None:
    scope = run_forwarded([(b"x-forwarded-for", b"192.0.2.1")], peer=(peer, 1), trusted=trusted)
    assert (scope["client"] == ("192.0.2.1", 0)) is rewritten


@pytest.mark.parametrize(
    "spoofed",
    [
        b", ".join([b"127.0.0.1"] * 100),  # more hops than the middleware reads
        b"x" * 10_000,  # longer than the middleware reads
        b"not-an-ip, also garbage",
    ],
)
def test_client_written_x_forwarded_for_cannot_make_the_request_look_sent_by_the_proxy(spoofed: bytes) -> None:
    """Regression for the first two: the whole list was ignored, the client became the trusted proxy."""
    scope = run_forwarded([(b"x-forwarded-for", spoofed + b", 192.0.2.1")])
    assert scope["client"] == ("192.0.2.1", 0)


@pytest.mark.parametrize(
    "spoofed",
    [
        b"garbage",
        b'for="unterminated',
        b"for=1.2.3.4;for=5.6.7.8",
        b", ".join([b"for=127.0.0.1"] * 100),
        b"for=" + b"x" * 10_000,
    ],
)
def test_client_written_forwarded_cannot_make_the_request_look_sent_by_the_proxy(spoofed: bytes) -> None:
    """Regression: a malformed or oversized client part made the whole Forwarded header ignored."""
    for headers in (
        [(b"forwarded", spoofed + b", for=192.0.2.1;proto=https")],  # the proxy appended to the line
        [(b"forwarded", spoofed), (b"forwarded", b"for=192.0.2.1;proto=https")],  # or added its own line
    ):
        scope = run_forwarded(headers, kind="forwarded")
        assert scope["client"] == ("192.0.2.1", 0)
        assert scope["scheme"] == "https"


def test_a_malformed_forwarded_value_of_the_proxy_itself_still_rewrites_nothing() -> None:
    scope = run_forwarded([(b"forwarded", b"for=192.0.2.1;host=exa mple.com")], kind="forwarded")
    assert scope["client"] == PROXY
    assert _host(scope) == b"internal:8080"


# -------------------------------------------------------------------------------------------------- request id


@pytest.mark.parametrize(
    "value",
    [
        b"abc\r\nX-Injected: 1",
        b"abc\nfake log line",
        b'abc", "admin": true, "x": "',
        b"abc} {",
        b"abc def",
        b"\xc3\xa9t\xc3\xa9",
        b"-leading-dash",
        b"a" * 500,
        b"abc\x1b[31mred",
    ],
)
def test_request_id_cannot_inject_into_logs_or_headers(settings: Any, value: bytes) -> None:
    seen: list[str | None] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(request_id.get_request_id())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [(b"x-request-id", value)]}
    asyncio.run(request_id.RequestIdMiddleware(app)(scope, None, send))  # type: ignore[arg-type]
    (given,) = seen
    assert given is not None
    assert len(given) == 32
    int(given, 16)  # a fresh id, not the caller's text
    (header,) = [v for name, v in sent[0]["headers"] if name == b"x-request-id"]
    assert header == given.encode()


# ------------------------------------------------------------------------------------------------------ errors


def test_traceback_only_for_a_real_admin(secret_settings: Any) -> None:
    app = security_service()
    with client_for(app) as browser:
        valid = login_cookie(browser)
    forged = _forged_secret_cookies(valid)
    attempts: list[dict[Any, Any]] = [
        {},
        {"X-API-Key": "wrong"},
        {"Authorization": "Bearer wrong"},
        *({b"Cookie": f"c2c-jwt-auth={cookie}".encode()} for cookie in forged.values()),
    ]
    for headers in attempts:
        auth.reset_state()
        with client_for(app) as client:
            response = client.get("/service/boom", headers=headers)
        body = response.json()
        assert response.status_code == 500
        assert "traceback" not in body, headers
        assert "detail" not in body, headers
        assert "hunter2" not in response.text
    with client_for(app) as client:
        admin = client.get("/service/boom", headers={"X-API-Key": SECRET}).json()
    assert "hunter2" in admin["detail"]


def test_error_log_line_escapes_control_characters_of_the_path(
    secret_settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Regression: the decoded path went verbatim into the log line (%0A forged a new line)."""

    async def boom(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError(scope["path"])

    client = client_for(ErrorResponseMiddleware(boom))  # type: ignore[arg-type]  # no lifespan: not entered
    with caplog.at_level(logging.ERROR, logger="c2casgiutils.errors"):
        assert client.get("/a%0D%0AERROR%20forged%20line").status_code == 500
    (record,) = [record for record in caplog.records if record.name == "c2casgiutils.errors"]
    assert "\n" not in record.getMessage()
    assert "\r" not in record.getMessage()
    assert "\\x0a" in record.getMessage()


# ----------------------------------------------------------------------------------------------- headers tool


def test_headers_tool_masks_every_credential(secret_settings: Any) -> None:
    with client_for(security_service()) as client:
        response = client.get(
            "/c2c/headers",
            params={"secret": SECRET, "access_token": "tok-123", "page": "2"},
            headers={
                "X-API-Key": SECRET,
                "Proxy-Authorization": "Basic dXNlcjpwYXNz",
                "X-Auth-Token": "tok-456",
                "Set-Cookie": "session=abc",
                "X-Amz-Security-Token": "tok-789",
                "X-Other": "visible",
            },
        )
    assert response.status_code == 200
    body = response.json()
    for value in (SECRET, "tok-123", "tok-456", "tok-789", "dXNlcjpwYXNz", "session=abc"):
        assert value not in response.text, value
    headers = body["headers"]
    for name in ("x-api-key", "proxy-authorization", "x-auth-token", "set-cookie", "x-amz-security-token"):
        assert headers[name] == "*****"
    assert headers["x-other"] == "visible"
    assert body["query_params"] == {"secret": "*****", "access_token": "*****", "page": "2"}
    assert "page=2" in body["url"]["query"]
    assert "secret=" in body["url"]["url"]


# --------------------------------------------------------------------------------------------------- broadcast


def test_replay_guard_keeps_refusing_replays_of_forgotten_ids(settings: Any) -> None:
    """Regression: past max_entries, fresh ids were forgotten and could be replayed within max_age."""
    settings.broadcast.secret = "the-secret"
    guard = _signing.ReplayGuard(max_entries=2)
    first = time.time() - 5
    guard.check("a", first)
    guard.check("b", first + 1)
    guard.check("c", first + 2)  # "a" is forgotten
    with pytest.raises(_signing.SignatureError, match="older than"):
        guard.check("a", first)  # the replay carries its original timestamp
    guard.check("d", first + 3)


def test_signature_with_an_empty_or_another_secret(settings: Any) -> None:
    settings.broadcast.secret = "the-secret"
    signed = _signing.sign("chan", b"{}")
    for other in ("", "the-secret ", "The-secret"):
        settings.broadcast.secret = other or None
        forged = _signing.sign("chan", b"{}")
        settings.broadcast.secret = "the-secret"
        with pytest.raises(_signing.SignatureError):
            _signing.open_frame(b"chan", forged)
    assert _signing.open_frame(b"chan", signed) == b"{}"
    for frame in (b"", b"-", b" ", signed.split(b" ")[0], b"0" * 64 + b" {}"):
        with pytest.raises(_signing.SignatureError):
            _signing.open_frame(b"chan", frame)


async def test_captured_broadcast_is_not_replayed_on_redis(settings: Any, redis_server: Any) -> None:
    settings.redis.url = redis_server.url
    settings.broadcast.secret = "the-secret"
    await broadcast.shutdown()
    calls: list[str] = []
    try:
        await broadcast.startup()
        await broadcast.subscribe("victim", lambda tag: calls.append(tag))
        await broadcast.subscribe("other", lambda tag: calls.append("other:" + tag))
        spy = redis.asyncio.Redis.from_url(redis_server.url, socket_timeout=5)
        pubsub = spy.pubsub()
        await pubsub.subscribe("broadcast_api_victim")
        await pubsub.get_message(timeout=2)  # the subscribe confirmation
        await broadcast.broadcast("victim", {"tag": "original"}, expect_answers=True, timeout=5)
        captured = None
        deadline = time.monotonic() + 5
        while captured is None and time.monotonic() < deadline:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
            if message is not None:
                captured = message["data"]
        assert captured is not None
        await pubsub.unsubscribe("broadcast_api_victim")
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        assert await spy.publish("broadcast_api_victim", captured) == 1  # replay
        assert await spy.publish("broadcast_api_other", captured) == 1  # on another channel
        huge = _signing.sign("broadcast_api_victim", json.dumps({"id": "x", "ts": 0, "pad": "x" * 1_000_000}).encode())
        assert await spy.publish("broadcast_api_victim", huge[:-10] + b'"}' + b" " * 8) == 1  # oversized, tampered
        await broadcast.broadcast("victim", {"tag": "last"}, expect_answers=True, timeout=5)
        await spy.aclose()
    finally:
        await broadcast.shutdown()
        await redis_utils.cleanup()
        for channel in ("victim", "other"):
            broadcast._STATE.registry.remove(channel)
    assert calls == ["original", "last"]
