"""Calls to GitHub (OAuth token endpoint, ``/user``, ``/repos/{owner}/{repo}``), each bounded by a timeout.

Failures of GitHub itself (timeouts, 5xx, rate limit) raise :class:`GitHubUnavailableError` /
:class:`GitHubRateLimitError`, so callers report them as such instead of answering "no access".
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import ssl
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

import httpx

from c2casgiutils import config
from c2casgiutils.auth._cache import TTLCache
from c2casgiutils.auth._keys import token_digest

_LOGGER = logging.getLogger(__name__)

_API_HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
_OAUTH_HEADERS = {"Accept": "application/json"}
_REFRESH_RESULT_TTL_SECONDS = 600.0


class GitHubError(Exception):
    """A GitHub call did not give the expected answer."""

    status_code = 502

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class GitHubUnavailableError(GitHubError):
    """GitHub timed out, failed (5xx) or answered something unexpected: a 502 for our caller."""


class GitHubRateLimitError(GitHubError):
    """GitHub's rate limit is reached: a 503 with Retry-After for our caller."""

    status_code = 503


class GitHubTokenRejectedError(GitHubError):
    """GitHub answered 401 for the token: the session is over (revoked or expired)."""

    status_code = 401


class GitHubOAuthError(GitHubError):
    """The OAuth endpoint refused the code or refresh token (``bad_verification_code``...)."""

    status_code = 400

    def __init__(self, message: str, error_code: str) -> None:
        super().__init__(message)
        self.error_code = error_code


@dataclass(frozen=True)
class TokenSet:
    """An OAuth answer: the access token and, for expiring tokens, when they expire."""

    access_token: str
    access_expires_at: int | None = None
    refresh_token: str | None = None
    refresh_expires_at: int | None = None


@dataclass(frozen=True)
class GitHubUser:
    """The fields of ``GET /user`` we use."""

    login: str
    name: str
    html_url: str


USER_CACHE: TTLCache[GitHubUser] = TTLCache()
PERMISSION_CACHE: TTLCache[dict[str, bool]] = TTLCache()
REFRESH_CACHE: TTLCache[TokenSet] = TTLCache()


def reset_caches() -> None:
    """Forget every cached GitHub answer."""
    USER_CACHE.clear()
    PERMISSION_CACHE.clear()
    REFRESH_CACHE.clear()


@functools.lru_cache(maxsize=1)
def _ssl_context() -> ssl.SSLContext:
    # Built once: loading the CA store costs milliseconds we should not pay on every call.
    return ssl.create_default_context()


def _timeout_seconds() -> float:
    return config.settings.auth.github.timeout.total_seconds()


async def _request(method: str, url: str, what: str, **kwargs: Any) -> httpx.Response:
    timeout = _timeout_seconds()
    try:
        async with asyncio.timeout(timeout):
            async with httpx.AsyncClient(timeout=timeout, verify=_ssl_context(), follow_redirects=False) as client:
                response = await client.request(method, url, **kwargs)
    except (TimeoutError, httpx.TimeoutException) as error:
        raise GitHubUnavailableError(f"GitHub did not answer {what} within {timeout:g} s") from error
    except httpx.HTTPError as error:
        raise GitHubUnavailableError(f"GitHub could not be reached for {what}: {error}") from error
    _raise_for_rate_limit(response, what)
    if response.status_code >= 500:
        raise GitHubUnavailableError(f"GitHub failed on {what}: HTTP {response.status_code}")
    return response


def _raise_for_rate_limit(response: httpx.Response, what: str) -> None:
    if response.status_code not in (403, 429):
        return
    headers = response.headers
    limited = (
        response.status_code == 429
        or headers.get("x-ratelimit-remaining") == "0"
        or "retry-after" in headers
        or "rate limit" in response.text.lower()
    )
    if not limited:
        return
    retry_after: int | None = None
    if headers.get("retry-after", "").isdigit():
        retry_after = int(headers["retry-after"])
    elif headers.get("x-ratelimit-reset", "").isdigit():
        retry_after = max(math.ceil(int(headers["x-ratelimit-reset"]) - time.time()), 1)
    when = f": retry in {retry_after} s" if retry_after is not None else ""
    raise GitHubRateLimitError(f"GitHub rate limit reached on {what}{when}", retry_after=retry_after)


def _json_object(response: httpx.Response, what: str) -> dict[str, Any]:
    try:
        data = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise GitHubUnavailableError(f"GitHub answered {what} with something that is not JSON") from error
    if not isinstance(data, dict):
        raise GitHubUnavailableError(f"GitHub answered {what} with JSON that is not an object")
    return data


def _lifetime(value: Any, now: int) -> int | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return now + int(value)
    if isinstance(value, str) and value.isdigit():
        return now + int(value)
    return None


async def _token_request(form: dict[str, str], what: str) -> TokenSet:
    github = config.settings.auth.github
    response = await _request("POST", github.token_url, what, data=form, headers=_OAUTH_HEADERS)
    if "application/x-www-form-urlencoded" in response.headers.get("content-type", ""):
        data: dict[str, Any] = dict(urllib.parse.parse_qsl(response.text))
    else:
        data = _json_object(response, what)
    if "error" in data:
        error_code = str(data["error"])
        description = str(data.get("error_description") or error_code)
        raise GitHubOAuthError(f"GitHub refused {what}: {description} ({error_code})", error_code=error_code)
    if response.status_code != 200:
        raise GitHubUnavailableError(f"GitHub answered {what} with HTTP {response.status_code}")
    access_token = data.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise GitHubUnavailableError(f"GitHub answered {what} without an access token")
    token_type = str(data.get("token_type", "")).lower()
    if token_type != "bearer":  # noqa: S105 # the OAuth token type, not a secret
        raise GitHubUnavailableError(f"GitHub answered {what} with token type {token_type!r}, expected 'bearer'")
    now = int(time.time())
    refresh_token = data.get("refresh_token")
    return TokenSet(
        access_token=access_token,
        access_expires_at=_lifetime(data.get("expires_in"), now),
        refresh_token=refresh_token if isinstance(refresh_token, str) and refresh_token else None,
        refresh_expires_at=_lifetime(data.get("refresh_token_expires_in"), now),
    )


async def exchange_code(code: str, redirect_uri: str) -> TokenSet:
    """Exchange the OAuth code of the callback for tokens."""
    github = config.settings.auth.github
    form = {
        "client_id": github.client_id or "",
        "client_secret": github.client_secret or "",
        "code": code,
        "redirect_uri": redirect_uri,
    }
    return await _token_request(form, "the code exchange")


async def refresh(refresh_token: str) -> TokenSet:
    """New tokens for a refresh token; GitHub refresh tokens are single-use, so the answer is kept a while.

    Concurrent requests of one browser (and a response whose new cookie did not reach it) then reuse
    the same answer instead of burning the refresh token twice.
    """
    github = config.settings.auth.github

    async def load() -> TokenSet:
        form = {
            "client_id": github.client_id or "",
            "client_secret": github.client_secret or "",
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
        }
        return await _token_request(form, "the token refresh")

    return await REFRESH_CACHE.get_or_load(token_digest(refresh_token), _REFRESH_RESULT_TTL_SECONDS, load)


def _bearer(token: str) -> dict[str, str]:
    return {**_API_HEADERS, "Authorization": f"Bearer {token}"}


async def _fetch_user(token: str) -> GitHubUser:
    response = await _request("GET", config.settings.auth.github.user_url, "the user request", headers=_bearer(token))
    if response.status_code == 401:
        raise GitHubTokenRejectedError("GitHub rejected the token (revoked or expired): log in again")
    if response.status_code != 200:
        raise GitHubUnavailableError(f"GitHub answered the user request with HTTP {response.status_code}")
    data = _json_object(response, "the user request")
    login = data.get("login")
    if not isinstance(login, str) or not login:
        raise GitHubUnavailableError("GitHub answered the user request without a login")
    name = data.get("name")
    html_url = data.get("html_url")
    return GitHubUser(
        login=login,
        name=name if isinstance(name, str) and name else login,
        html_url=html_url if isinstance(html_url, str) else "",
    )


async def get_user(token: str, *, cached: bool = True) -> GitHubUser:
    """The user of a token (cached for the permission TTL, keyed by a digest of the token)."""
    if not cached:
        return await _fetch_user(token)
    ttl = config.settings.auth.github.permission_cache_ttl.total_seconds()
    return await USER_CACHE.get_or_load(token_digest(token), ttl, lambda: _fetch_user(token))


async def _fetch_permissions(token: str, repository: str) -> dict[str, bool]:
    url = f"{config.settings.auth.github.repo_url.rstrip('/')}/{repository}"
    response = await _request("GET", url, "the repository request", headers=_bearer(token))
    if response.status_code == 401:
        raise GitHubTokenRejectedError("GitHub rejected the token (revoked or expired): log in again")
    if response.status_code in (403, 404):
        # GitHub hides private repositories the token cannot see (404) or refuses it (403, e.g. SSO).
        _LOGGER.info("GitHub gives no access to %s (HTTP %s)", repository, response.status_code)
        return {}
    if response.status_code != 200:
        raise GitHubUnavailableError(f"GitHub answered the repository request with HTTP {response.status_code}")
    permissions = _json_object(response, "the repository request").get("permissions")
    if not isinstance(permissions, dict):
        return {}
    return {str(name): value is True for name, value in permissions.items()}


async def get_permissions(token: str, repository: str) -> dict[str, bool]:
    """The token's permissions on a repository (``{"pull": True, ...}``), cached for a short TTL."""
    ttl = config.settings.auth.github.permission_cache_ttl.total_seconds()
    key = (token_digest(token), repository.lower())
    return await PERMISSION_CACHE.get_or_load(key, ttl, lambda: _fetch_permissions(token, repository))
