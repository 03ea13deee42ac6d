"""The login cookie: written at login, read (and refreshed) on each request, deleted at logout.

One cookie (``C2C__AUTH__JWT__COOKIE__NAME``) holds either a shared-secret login (``kind: secret``, signed
with a key derived from the secret) or a GitHub session (``kind: github``, signed with a key derived from
the JWT secret, the GitHub tokens inside encrypted).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import HTTPException, Request, Response

from c2casgiutils import config
from c2casgiutils.auth import _cookies, _github, _keys
from c2casgiutils.auth._configuration import github_enabled, secret_enabled
from c2casgiutils.auth._models import AuthInfo, AuthMethod, UserInfo

_LOGGER = logging.getLogger(__name__)


def _cookie_age_seconds() -> int:
    return max(int(config.settings.auth.jwt.cookie.age.total_seconds()), 1)


def secret_key() -> bytes:
    """Signing key of the shared-secret cookie (the secret must be configured)."""
    secret = config.settings.auth.secret
    assert secret
    return _keys.secret_cookie_key(secret, config.settings.auth.jwt.secret)


def github_key() -> bytes:
    """Signing key of the GitHub session and state cookies (the JWT secret must be configured)."""
    jwt_secret = config.settings.auth.jwt.secret
    if not jwt_secret:
        raise HTTPException(500, "GitHub authentication needs C2C__AUTH__JWT__SECRET")
    return _keys.github_cookie_key(jwt_secret)


def write_secret_login(request: Request, response: Response) -> None:
    """Set the cookie proving a shared-secret login (it does not contain the secret)."""
    age = _cookie_age_seconds()
    token = _cookies.encode("secret", {}, secret_key(), age)
    _cookies.set_cookie(
        response, config.settings.auth.jwt.cookie.name, token, age, _cookies.session_cookie_path(request)
    )


def write_github_login(
    request: Request, response: Response, user: _github.GitHubUser, tokens: _github.TokenSet
) -> None:
    """Set the GitHub session cookie; the tokens are sealed so the browser never sees them in clear."""
    jwt_secret = config.settings.auth.jwt.secret
    assert jwt_secret
    claims: dict[str, Any] = {
        "login": user.login,
        "name": user.name,
        "url": user.html_url,
        "at": _keys.seal(tokens.access_token, jwt_secret, f"access:{user.login}"),
    }
    now = int(time.time())
    lifetime = _cookie_age_seconds()
    if tokens.access_expires_at is not None:
        claims["at_exp"] = tokens.access_expires_at
    if tokens.refresh_token is not None:
        claims["rt"] = _keys.seal(tokens.refresh_token, jwt_secret, f"refresh:{user.login}")
        if tokens.refresh_expires_at is not None:
            claims["rt_exp"] = tokens.refresh_expires_at
            lifetime = min(lifetime, tokens.refresh_expires_at - now)
    elif tokens.access_expires_at is not None:
        # Nothing to refresh with: the session ends with the access token.
        lifetime = min(lifetime, tokens.access_expires_at - now)
    lifetime = max(lifetime, 1)
    token = _cookies.encode("github", claims, github_key(), lifetime)
    _cookies.set_cookie(
        response, config.settings.auth.jwt.cookie.name, token, lifetime, _cookies.session_cookie_path(request)
    )


def clear_login(request: Request, response: Response) -> None:
    """Delete the login cookie."""
    _cookies.delete_cookie(response, config.settings.auth.jwt.cookie.name, _cookies.session_cookie_path(request))


def login_actor(request: Request) -> str | None:
    """Whom the login cookie was written for (``secret`` or the GitHub login), read without calling GitHub;
    None without a valid cookie."""
    token = request.cookies.get(config.settings.auth.jwt.cookie.name)
    decoded = _decoded(token) if token else None
    if decoded is None:
        return None
    if decoded[0] == "secret":
        return AuthMethod.SECRET.value  # the name of the method, never the secret itself
    login = decoded[1].get("login")
    return login if isinstance(login, str) and login else None


def _expiring(expires_at: Any, margin_seconds: float) -> bool:
    return isinstance(expires_at, int) and time.time() + margin_seconds >= expires_at


def _decoded(token: str) -> tuple[str, dict[str, Any]] | None:
    """The kind (``secret`` or ``github``) and claims of a login cookie valid with the current settings, or None."""
    if secret_enabled():
        try:
            return "secret", _cookies.decode(token, "secret", secret_key())
        except _cookies.InvalidCookieError:
            pass
    if github_enabled() and config.settings.auth.jwt.secret:
        try:
            return "github", _cookies.decode(token, "github", github_key())
        except _cookies.InvalidCookieError:
            pass
    return None


async def read_login(request: Request, response: Response) -> AuthInfo:
    """The login carried by the cookie; an invalid cookie is deleted and counts as no login."""
    token = request.cookies.get(config.settings.auth.jwt.cookie.name)
    if not token:
        return AuthInfo(is_logged_in=False)
    decoded = _decoded(token)
    if decoded is None:
        _LOGGER.info("Ignoring a login cookie that is invalid, expired or signed for other settings")
    elif decoded[0] == "secret":
        return AuthInfo(is_logged_in=True, type=AuthMethod.SECRET)
    else:
        try:
            return await _github_login(request, response, decoded[1])
        except (_keys.SealError, KeyError, TypeError) as error:
            _LOGGER.info("Ignoring an invalid GitHub session cookie: %s", error)
    clear_login(request, response)
    return AuthInfo(is_logged_in=False)


async def _github_login(request: Request, response: Response, claims: dict[str, Any]) -> AuthInfo:
    jwt_secret = config.settings.auth.jwt.secret
    assert jwt_secret
    login = str(claims["login"])
    access_token = _keys.unseal(str(claims["at"]), jwt_secret, f"access:{login}")
    user = _github.GitHubUser(login=login, name=str(claims.get("name") or login), html_url=str(claims.get("url", "")))
    access_expires_at = claims.get("at_exp")
    margin = config.settings.auth.github.access_token_expiration_margin.total_seconds()
    if _expiring(access_expires_at, margin):
        sealed_refresh = claims.get("rt")
        if not isinstance(sealed_refresh, str) or _expiring(claims.get("rt_exp"), 0):
            if _expiring(access_expires_at, 0):
                clear_login(request, response)
                return AuthInfo(is_logged_in=False)
        else:
            refresh_token = _keys.unseal(sealed_refresh, jwt_secret, f"refresh:{login}")
            try:
                tokens = await _github.refresh(refresh_token)
            except _github.GitHubOAuthError as error:
                _LOGGER.info("GitHub session of %s ends: %s", login, error.message)
                clear_login(request, response)
                return AuthInfo(is_logged_in=False)
            except _github.GitHubError:
                if _expiring(access_expires_at, 0):
                    raise
                _LOGGER.warning("GitHub token refresh failed; the current token is still valid", exc_info=True)
            else:
                write_github_login(request, response, user, tokens)
                access_token = tokens.access_token
    return AuthInfo(
        is_logged_in=True,
        type=AuthMethod.GITHUB_OAUTH,
        user=UserInfo(login=user.login, display_name=user.name, url=user.html_url, token=access_token),
    )
