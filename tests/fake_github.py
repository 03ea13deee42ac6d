"""A small fake GitHub (OAuth + REST API) on 127.0.0.1, speaking GitHub's real request/response formats.

Endpoints (as on github.com / api.github.com):
- ``GET /login/oauth/authorize``: the user "approves" at once and is redirected to ``redirect_uri`` with
  ``code`` and ``state`` (or ``error=access_denied`` when ``deny`` is set);
- ``POST /login/oauth/access_token``: form-encoded request; JSON answer when ``Accept: application/json``,
  form-encoded otherwise; ``grant_type=refresh_token`` with single-use refresh tokens; OAuth errors are
  HTTP 200 with ``error``/``error_description`` as GitHub does;
- ``GET /user`` and ``GET /repos/{owner}/{repo}`` with ``Authorization: Bearer``/``token``: 401
  "Bad credentials", 404 for private repositories the user cannot see, ``permissions`` otherwise;
- rate limits: 403 with ``x-ratelimit-remaining: 0`` (primary) or 429 with ``retry-after`` (secondary);
  ``fail_with`` answers every API call with that status, ``delay`` makes it slow (bounded).

``hits`` counts the calls per endpoint so tests can see what reached GitHub.
"""

from __future__ import annotations

import collections
import json
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DOCS = "https://docs.github.com/rest"


@dataclass
class FakeUser:
    login: str
    name: str | None
    id: int


@dataclass
class _Grant:
    login: str
    expires_at: float | None


@dataclass
class _Code:
    login: str
    redirect_uri: str
    expires_at: float


@dataclass
class FakeGitHub:
    client_id: str = "Iv1.fakeclientid"
    client_secret: str = "fake-client-secret-0123456789"
    expiring_tokens: bool = True
    access_token_lifetime: int = 28800
    refresh_token_lifetime: int = 15897600
    users: dict[str, FakeUser] = field(default_factory=dict)
    # (login, "owner/repo") -> permissions; repositories in public_repos give pull to everyone.
    permissions: dict[tuple[str, str], dict[str, bool]] = field(default_factory=dict)
    public_repos: set[str] = field(default_factory=set)
    next_login: str = "octocat"
    deny: bool = False
    rate_limited: str | None = None  # None, "primary" or "secondary"
    fail_with: int | None = None
    delay: float = 0.0
    hits: collections.Counter[str] = field(default_factory=collections.Counter)
    token_requests: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._codes: dict[str, _Code] = {}
        self._tokens: dict[str, _Grant] = {}
        self._refresh_tokens: dict[str, _Grant] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # --- control -------------------------------------------------------------------------------

    def add_user(self, login: str, name: str | None = None) -> FakeUser:
        user = FakeUser(login=login, name=name, id=len(self.users) + 1)
        self.users[login] = user
        return user

    def grant(self, login: str, repository: str, level: str) -> None:
        """Give ``login`` the permission ``level`` (pull, push or admin) on ``repository``."""
        order = ["pull", "triage", "push", "maintain", "admin"]
        rank = order.index(level)
        self.permissions[(login, repository)] = {name: order.index(name) <= rank for name in order}

    def issue_token(self, login: str) -> str:
        """A valid access token for ``login`` (as a personal token would be)."""
        token = "ghu_" + secrets.token_hex(18)
        with self._lock:
            self._tokens[token] = _Grant(login, None)
        return token

    def revoke_all(self) -> None:
        with self._lock:
            self._tokens.clear()
            self._refresh_tokens.clear()

    def known_tokens(self) -> list[str]:
        with self._lock:
            return list(self._tokens) + list(self._refresh_tokens)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def configure(self, settings: Any, repository: str = "camptocamp/secret-repo") -> None:
        """Point c2casgiutils settings at this fake."""
        github = settings.auth.github
        github.authorize_url = f"{self.url}/login/oauth/authorize"
        github.token_url = f"{self.url}/login/oauth/access_token"
        github.user_url = f"{self.url}/user"
        github.repo_url = f"{self.url}/repos"
        github.client_id = self.client_id
        github.client_secret = self.client_secret
        github.repository = repository

    def start(self) -> None:
        fake = self

        class Handler(_Handler):
            github = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # --- behaviour ---------------------------------------------------------------------------------

    def _new_grant(self, login: str) -> dict[str, Any]:
        now = time.time()
        access_token = "ghu_" + secrets.token_hex(18)
        answer: dict[str, Any] = {"access_token": access_token, "token_type": "bearer", "scope": ""}
        if self.expiring_tokens:
            refresh_token = "ghr_" + secrets.token_hex(38)
            self._tokens[access_token] = _Grant(login, now + self.access_token_lifetime)
            self._refresh_tokens[refresh_token] = _Grant(login, now + self.refresh_token_lifetime)
            answer.update(
                expires_in=self.access_token_lifetime,
                refresh_token=refresh_token,
                refresh_token_expires_in=self.refresh_token_lifetime,
            )
        else:
            answer["scope"] = "repo"
            self._tokens[access_token] = _Grant(login, None)
        return answer

    def token_endpoint(self, form: dict[str, str]) -> dict[str, Any]:
        with self._lock:
            self.token_requests.append(dict(form))
            if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
                return _oauth_error(
                    "incorrect_client_credentials", "The client_id and/or client_secret passed are incorrect."
                )
            if form.get("grant_type") == "refresh_token":
                self.hits["refresh"] += 1
                grant = self._refresh_tokens.pop(form.get("refresh_token", ""), None)  # single use
                if grant is None or (grant.expires_at is not None and grant.expires_at < time.time()):
                    return _oauth_error("bad_refresh_token", "The refresh token passed is incorrect or expired.")
                return self._new_grant(grant.login)
            self.hits["token"] += 1
            code = self._codes.pop(form.get("code", ""), None)  # single use
            if code is None or code.expires_at < time.time():
                return _oauth_error("bad_verification_code", "The code passed is incorrect or expired.")
            if form.get("redirect_uri") and form["redirect_uri"] != code.redirect_uri:
                return _oauth_error(
                    "redirect_uri_mismatch",
                    "The redirect_uri MUST match the registered callback URL for this application.",
                )
            return self._new_grant(code.login)

    def authorize(self, query: dict[str, str]) -> tuple[int, str]:
        """Status and Location (or an error page text)."""
        self.hits["authorize"] += 1
        if query.get("client_id") != self.client_id:
            return 404, "Not Found"
        redirect_uri = query.get("redirect_uri", "")
        if not redirect_uri.startswith("http"):
            return 400, "redirect_uri is required"
        params: dict[str, str] = {}
        if self.deny:
            params["error"] = "access_denied"
            params["error_description"] = "The user has denied your application access."
            params["error_uri"] = "https://docs.github.com/apps/troubleshooting-authorization-request-errors"
        else:
            code = secrets.token_hex(10)
            with self._lock:
                self._codes[code] = _Code(self.next_login, redirect_uri, time.time() + 600)
            params["code"] = code
        if "state" in query:
            params["state"] = query["state"]
        separator = "&" if "?" in redirect_uri else "?"
        return 302, f"{redirect_uri}{separator}{urllib.parse.urlencode(params)}"

    def login_of(self, authorization: str) -> str | None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() not in ("bearer", "token"):
            return None
        with self._lock:
            grant = self._tokens.get(token.strip())
        if grant is None or (grant.expires_at is not None and grant.expires_at < time.time()):
            return None
        return grant.login


def _oauth_error(code: str, description: str) -> dict[str, Any]:
    return {
        "error": code,
        "error_description": description,
        "error_uri": "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors",
    }


class _Handler(BaseHTTPRequestHandler):
    github: FakeGitHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        del format, args  # keep the test output clean

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(data).encode(), "application/json; charset=utf-8", headers)

    def _slow_down(self) -> None:
        if self.github.delay:
            self.github._stop.wait(min(self.github.delay, 10.0))

    def _api_trouble(self) -> bool:
        """Answer a rate limit or a failure if the fake is set so; True when answered."""
        github = self.github
        reset = int(time.time()) + 60
        if github.rate_limited == "primary":
            self._json(
                403,
                {"message": "API rate limit exceeded for user ID 1.", "documentation_url": DOCS, "status": "403"},
                {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)},
            )
            return True
        if github.rate_limited == "secondary":
            self._json(
                429,
                {"message": "You have exceeded a secondary rate limit.", "documentation_url": DOCS, "status": "429"},
                {"retry-after": "30"},
            )
            return True
        if github.fail_with is not None:
            self._json(github.fail_with, {"message": "Server Error"})
            return True
        return False

    def _rate_headers(self) -> dict[str, str]:
        return {
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": "4999",
            "x-ratelimit-reset": str(int(time.time()) + 3600),
        }

    def do_GET(self) -> None:
        parsed = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(parsed.query))
        github = self.github
        if parsed.path == "/login/oauth/authorize":
            status, location = github.authorize(query)
            if status == 302:
                self._send(302, b"", "text/html", {"Location": location})
            else:
                self._send(status, location.encode(), "text/plain")
            return
        parts = parsed.path.strip("/").split("/")
        if parsed.path == "/user":
            github.hits["user"] += 1
        elif len(parts) == 3 and parts[0] == "repos":
            github.hits["repo"] += 1
        else:
            self._json(404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"})
            return
        self._slow_down()
        if self._api_trouble():
            return
        login = github.login_of(self.headers.get("Authorization", ""))
        if login is None:
            self._json(401, {"message": "Bad credentials", "documentation_url": DOCS, "status": "401"})
            return
        if parsed.path == "/user":
            user = github.users.get(login) or FakeUser(login, None, 999)
            self._json(
                200,
                {
                    "login": user.login,
                    "id": user.id,
                    "node_id": f"MDQ6VXNlcj{user.id}",
                    "avatar_url": f"https://avatars.githubusercontent.com/u/{user.id}?v=4",
                    "html_url": f"https://github.com/{user.login}",
                    "type": "User",
                    "site_admin": False,
                    "name": user.name,
                },
                self._rate_headers(),
            )
            return
        repository = f"{parts[1]}/{parts[2]}"
        permissions = github.permissions.get((login, repository))
        if permissions is None and repository in github.public_repos:
            permissions = {"admin": False, "maintain": False, "push": False, "triage": False, "pull": True}
        if permissions is None:
            self._json(404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"}, self._rate_headers())
            return
        self._json(
            200,
            {
                "id": 1296269,
                "name": parts[2],
                "full_name": repository,
                "private": repository not in github.public_repos,
                "owner": {"login": parts[1]},
                "html_url": f"https://github.com/{repository}",
                "permissions": permissions,
            },
            self._rate_headers(),
        )

    def do_POST(self) -> None:
        parsed = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length).decode()
        if parsed.path != "/login/oauth/access_token":
            self._json(404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"})
            return
        self._slow_down()
        if self.github.rate_limited or self.github.fail_with is not None:
            self.github.hits["token"] += 1
            if self._api_trouble():
                return
        if not self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            self._json(400, _oauth_error("unsupported_content_type", "Send a form-encoded body."))
            return
        answer = self.github.token_endpoint(dict(urllib.parse.parse_qsl(body)))
        if "application/json" in self.headers.get("Accept", ""):
            self._json(200, answer)
        else:
            encoded = urllib.parse.urlencode({key: str(value) for key, value in answer.items()})
            self._send(200, encoded.encode(), "application/x-www-form-urlencoded; charset=utf-8")
