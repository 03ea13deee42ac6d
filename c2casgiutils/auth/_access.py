"""FastAPI dependencies: who is calling (:func:`get_auth`) and may they (:func:`require_admin_access`...).

Credentials, in order: the test user (when configured), a presented credential (``X-API-Key`` header,
``Authorization: Bearer`` with the secret or a GitHub token, or the discouraged ``?secret=`` query
parameter), then the login cookie. A presented credential that is wrong counts as a failed attempt for
the rate limit; it is never silently replaced by the cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, overload

from fastapi import Depends, HTTPException, Request, Response, status

from c2casgiutils import audit, config
from c2casgiutils.auth import _github, _rate_limit, _session
from c2casgiutils.auth._configuration import HOW_TO_OPEN, auth_type, github_enabled, secret_enabled
from c2casgiutils.auth._models import AuthConfig, AuthenticationType, AuthInfo, AuthMethod, UserInfo
from c2casgiutils.config import GitHubAccessType

_LOGGER = logging.getLogger(__name__)

_FAILURE_STATE_KEY = "c2c_auth_failure"
# Key of the digests compared by secret_matches (random per process: nothing to precompute).
_COMPARE_KEY = os.urandom(32)
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_SAME_ORIGIN_FETCH_SITES = frozenset({"same-origin", "none"})


def github_error_to_http(error: _github.GitHubError) -> HTTPException:
    """Report a GitHub failure as what it is (502/503 with the reason), not as "no access"."""
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
    return HTTPException(error.status_code, detail=error.message, headers=headers)


def secret_matches(candidate: str) -> bool:
    """Whether ``candidate`` is the configured secret, in constant time (its length included)."""
    expected = config.settings.auth.secret
    if not expected:
        return False
    # compare_digest returns at once on values of different lengths, which would tell the secret's
    # length: compare fixed-length digests instead.
    return hmac.compare_digest(
        hmac.new(_COMPARE_KEY, candidate.encode(), hashlib.sha256).digest(),
        hmac.new(_COMPARE_KEY, expected.encode(), hashlib.sha256).digest(),
    )


def cross_site_reason(request: Request) -> str | None:
    """Why an unsafe request (POST, DELETE...) looks sent by another site, or None when it does not.

    Browsers send ``Sec-Fetch-Site`` (older ones only ``Origin``); a client that sends neither (curl, an
    API client) is not a browser that could be abused by another site, so it is not refused.
    """
    if request.method in _SAFE_METHODS:
        return None
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return None if fetch_site.strip().lower() in _SAME_ORIGIN_FETCH_SITES else f"Sec-Fetch-Site: {fetch_site!r}"
    origin = request.headers.get("origin")
    if origin is None:
        return None
    # The host only: a proxy terminating TLS may hide the scheme the browser used.
    if origin == "null" or urllib.parse.urlsplit(origin).netloc.lower() != request.url.netloc.lower():
        return f"Origin: {origin!r}"
    return None


def _bearer_token(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _test_user() -> AuthInfo:
    username = config.settings.auth.test.username or "test"
    return AuthInfo(
        is_logged_in=True,
        type=AuthMethod.TEST,
        user=UserInfo(login=username, display_name=username),
    )


def actor(info: AuthInfo) -> str | None:
    """Who an authentication names in audit records: the GitHub login, ``secret``, or the test user."""
    if not info.is_logged_in:
        return None
    if info.type == AuthMethod.SECRET:
        return AuthMethod.SECRET.value  # the name of the method, never the secret itself
    return info.user.login or None


def _authenticated(request: Request, info: AuthInfo) -> AuthInfo:
    """``info``, remembered as the request's actor for the audit record of what it does."""
    audit.set_actor(request, actor(info))
    return info


async def _fail(request: Request, method: AuthMethod, reason: str) -> AuthInfo:
    """A wrong credential: counted by the limiter (429 when over it) and recorded; the route answers 401."""
    await _rate_limit.record_failure(request, method.value, reason)
    request.state.__setattr__(_FAILURE_STATE_KEY, reason)
    return AuthInfo(is_logged_in=False)


async def _github_bearer(request: Request, token: str) -> AuthInfo:
    try:
        user = await _github.get_user(token)
    except _github.GitHubTokenRejectedError:
        return await _fail(request, AuthMethod.GITHUB_BEARER, "GitHub rejected the bearer token")
    except _github.GitHubError as error:
        raise github_error_to_http(error) from error
    return _authenticated(
        request,
        AuthInfo(
            is_logged_in=True,
            type=AuthMethod.GITHUB_BEARER,
            user=UserInfo(login=user.login, display_name=user.name, url=user.html_url, token=token),
        ),
    )


async def get_auth(request: Request, response: Response) -> AuthInfo:
    """FastAPI dependency: the authentication of the current request (never raises for "not logged in").

    Raises 429 when the client presents a credential after too many failures, and 502/503 when GitHub
    cannot validate a bearer token.
    """
    if auth_type() == AuthenticationType.TEST:
        return _authenticated(request, _test_user())

    api_key = request.headers.get("x-api-key") or None
    bearer = _bearer_token(request)
    query_secret = request.query_params.get("secret") or None

    if api_key is not None or bearer is not None or query_secret is not None:
        github_bearer = api_key is None and bearer is not None and github_enabled()
        method = AuthMethod.GITHUB_BEARER if github_bearer else AuthMethod.SECRET
        await _rate_limit.ensure_not_blocked(request, method.value)
        candidate = api_key or bearer or query_secret
        assert candidate is not None
        if secret_enabled() and secret_matches(candidate):
            if api_key is None and bearer is None:
                # A login link (?secret=): keep the login in a cookie so the next pages work too.
                _session.write_secret_login(request, response)
            return _authenticated(request, AuthInfo(is_logged_in=True, type=AuthMethod.SECRET))
        if github_bearer:
            assert bearer is not None
            return await _github_bearer(request, bearer)
        failure = "wrong secret" if secret_enabled() else "no secret authentication is configured"
        return await _fail(request, AuthMethod.SECRET, failure)

    if request.cookies.get(config.settings.auth.jwt.cookie.name):
        reason = cross_site_reason(request)
        if reason is not None:
            # A browser sends the cookie on a form another site submits (same-site sibling domains even
            # with SameSite=lax): the cookie alone must not authorize a state change.
            request.state.__setattr__(
                _FAILURE_STATE_KEY,
                f"the login cookie is not accepted on a cross-site {request.method} ({reason}); "
                "send the request from this site or authenticate with a header",
            )
            _LOGGER.info("Refused the login cookie on a cross-site %s (%s)", request.method, reason)
            return AuthInfo(is_logged_in=False)
    try:
        return _authenticated(request, await _session.read_login(request, response))
    except _github.GitHubError as error:
        raise github_error_to_http(error) from error


def _login_hint(request: Request) -> str:
    del request
    ways = []
    if secret_enabled():
        ways.append("log in at auth/login or send the secret in the X-API-Key or Authorization: Bearer header")
    if github_enabled():
        ways.append("log in with GitHub at auth/github/login or send a GitHub token as Authorization: Bearer")
    return "; or ".join(ways)


def raise_not_logged_in(request: Request, response: Response | None = None) -> None:
    """Raise the right error for a request without a valid login: 403 if nothing is configured, else 401.

    A cookie deletion written on ``response`` (stale or revoked session) is carried by the error response.
    The refusal is an ``access_denied`` audit record, unless the request already has its record (a failed login).
    """
    if auth_type() == AuthenticationType.NONE:
        audit.record_denied(request, status.HTTP_403_FORBIDDEN, actor=None)
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"Admin tools are closed because no authentication is configured: {HOW_TO_OPEN}",
        )
    failure = getattr(request.state, _FAILURE_STATE_KEY, None)
    reason = f"Authentication failed ({failure})" if failure else "Authentication required"
    headers = {"WWW-Authenticate": "Bearer"}
    cookie_changes = response.headers.getlist("set-cookie") if response is not None else []
    if cookie_changes:
        headers["Set-Cookie"] = cookie_changes[-1]
    audit.record_denied(request, status.HTTP_401_UNAUTHORIZED, actor=None)
    raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail=f"{reason}: {_login_hint(request)}", headers=headers)


async def _github_has(auth_info: AuthInfo, repository: str, access: GitHubAccessType) -> bool:
    permissions = await _github.get_permissions(auth_info.user.token, repository)
    return permissions.get(access.value, False)


def admin_config() -> AuthConfig:
    """What admin access requires, from the settings."""
    github = config.settings.auth.github
    return AuthConfig(
        github_repository=github.repository, github_access_type=github.access_type_admin or github.access_type
    )


def read_only_config() -> AuthConfig:
    """What read-only access requires, from the settings."""
    github = config.settings.auth.github
    return AuthConfig(github_repository=github.repository, github_access_type=github.access_type_read_only)


def read_write_config() -> AuthConfig:
    """What read-write access requires, from the settings."""
    github = config.settings.auth.github
    return AuthConfig(github_repository=github.repository, github_access_type=github.access_type_read_write)


class AccessContext:
    """The authentication of one request and the checks on it; inject it with ``Depends(get_access_context)``.

    ``check_*`` answer a bool; ``require_*`` raise 401 (not logged in), 403 (no permission), or 502/503
    (GitHub failed or is rate limited).
    """

    def __init__(self, auth_info: AuthInfo, request: Request, response: Response) -> None:
        self.auth_info = auth_info
        self.request = request
        self.response = response

    async def _check(self, auth_config: AuthConfig) -> bool:
        info = self.auth_info
        if not info.is_logged_in:
            return False
        if info.type in (AuthMethod.SECRET, AuthMethod.TEST):
            return True
        github = config.settings.auth.github
        repository = auth_config.github_repository or github.repository
        if not repository or not info.user.token:
            return False
        admin = admin_config()
        try:
            allowed = await _github_has(info, repository, auth_config.required_access_type(github.access_type))
            if not allowed and admin.github_repository and admin != auth_config:
                # Admins of the configured repository have every access.
                allowed = await _github_has(
                    info, admin.github_repository, admin.required_access_type(github.access_type)
                )
        except _github.GitHubTokenRejectedError:
            # The token was revoked or expired on GitHub's side: the session is over.
            if info.type == AuthMethod.GITHUB_OAUTH:
                _session.clear_login(self.request, self.response)
            self.auth_info = AuthInfo(is_logged_in=False)
            self.request.state.__setattr__(_FAILURE_STATE_KEY, "GitHub rejected the token: log in again")
            return False
        return allowed

    async def check_access(self, auth_config: AuthConfig) -> bool:
        """Whether the user has the access ``auth_config`` describes (admins have every access)."""
        try:
            return await self._check(auth_config)
        except _github.GitHubError as error:
            raise github_error_to_http(error) from error

    async def check_admin_access(self) -> bool:
        """Whether the user has admin access."""
        return await self.check_access(admin_config())

    async def check_read_only_access(self) -> bool:
        """Whether the user has read-only access."""
        return await self.check_access(read_only_config())

    async def check_read_write_access(self) -> bool:
        """Whether the user has read-write access."""
        return await self.check_access(read_write_config())

    async def require_access(self, auth_config: AuthConfig, what: str = "this resource") -> None:
        """Raise unless the user has the access ``auth_config`` describes."""
        if await self.check_access(auth_config):
            return
        if not self.auth_info.is_logged_in:
            raise_not_logged_in(self.request, self.response)
        github = config.settings.auth.github
        repository = auth_config.github_repository or github.repository
        needed = auth_config.required_access_type(github.access_type).value
        audit.record_denied(self.request, status.HTTP_403_FORBIDDEN, actor=actor(self.auth_info))
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"You don't have access to {what}: the GitHub user {self.auth_info.user.login!r} needs "
            f"the {needed!r} permission on {repository}",
        )

    async def require_admin_access(self) -> None:
        """Raise unless the user has admin access."""
        await self.require_access(admin_config(), "the admin tools")

    async def require_read_only_access(self) -> None:
        """Raise unless the user has read-only access."""
        await self.require_access(read_only_config())

    async def require_read_write_access(self) -> None:
        """Raise unless the user has read-write access."""
        await self.require_access(read_write_config())


async def get_access_context(
    auth_info: Annotated[AuthInfo, Depends(get_auth)], request: Request, response: Response
) -> AccessContext:
    """FastAPI dependency giving the :class:`AccessContext` of the request."""
    return AccessContext(auth_info, request, response)


async def auth_required(
    auth_info: Annotated[AuthInfo, Depends(get_auth)], request: Request, response: Response
) -> None:
    """FastAPI dependency: any valid login (401 otherwise; 403 when no authentication is configured)."""
    if not auth_info.is_logged_in:
        raise_not_logged_in(request, response)


async def require_admin_access(context: Annotated[AccessContext, Depends(get_access_context)]) -> None:
    """FastAPI dependency: admin access (the admin tools use it)."""
    await context.require_admin_access()


async def require_read_only_access(context: Annotated[AccessContext, Depends(get_access_context)]) -> None:
    """FastAPI dependency: read-only access."""
    await context.require_read_only_access()


async def require_read_write_access(context: Annotated[AccessContext, Depends(get_access_context)]) -> None:
    """FastAPI dependency: read-write access."""
    await context.require_read_write_access()


AccessDependency = Callable[[AccessContext], Awaitable[None]]


@overload
def require_access(auth_config: AuthConfig, /) -> AccessDependency: ...


@overload
def require_access(
    auth_info: AuthInfo, auth_config: AuthConfig, request: Request, response: Response, /
) -> Awaitable[None]: ...


def require_access(*args: Any) -> AccessDependency | Awaitable[None]:
    """A dependency requiring the access ``auth_config`` describes: ``Depends(require_access(AuthConfig(...)))``.

    The reference's call form ``await require_access(auth_info, auth_config, request, response)`` works too.
    """
    if len(args) == 1 and isinstance(args[0], AuthConfig):
        auth_config: AuthConfig = args[0]

        async def dependency(context: Annotated[AccessContext, Depends(get_access_context)]) -> None:
            await context.require_access(auth_config)

        return dependency
    if len(args) == 4 and isinstance(args[0], AuthInfo) and isinstance(args[1], AuthConfig):
        return AccessContext(args[0], args[2], args[3]).require_access(args[1])
    raise TypeError("use require_access(AuthConfig(...)) or require_access(auth_info, auth_config, request, response)")


async def has_admin_access(request: Request) -> bool:
    """Whether the request has admin access; never raises (GitHub failures and rate limits count as no)."""
    response = Response()
    try:
        auth_info = await get_auth(request, response)
        return await AccessContext(auth_info, request, response).check_admin_access()
    except HTTPException as error:
        _LOGGER.info("Admin access not granted: %s", error.detail)
        return False
