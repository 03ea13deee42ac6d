"""Signed JWT cookies: pinned algorithm, required ``exp``/``iat``/``kind``, flags from the settings."""

from __future__ import annotations

import time
from typing import Any, Literal

import jwt
from fastapi import Request, Response
from starlette.routing import NoMatchFound

from c2casgiutils import config

CookieKind = Literal["secret", "github", "state"]


class InvalidCookieError(ValueError):
    """The cookie is forged, expired, of another kind, or signed with another key or algorithm."""


def encode(kind: CookieKind, claims: dict[str, Any], key: bytes, lifetime_seconds: int) -> str:
    """A JWT of the given kind, valid for ``lifetime_seconds``."""
    now = int(time.time())
    payload = {**claims, "kind": kind, "iat": now, "exp": now + lifetime_seconds}
    return jwt.encode(payload, key, algorithm=config.settings.auth.jwt.algorithm)


def decode(token: str, kind: CookieKind, key: bytes) -> dict[str, Any]:
    """Verify a JWT with the configured algorithm only and return its claims."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[config.settings.auth.jwt.algorithm],
            options={"require": ["exp", "iat", "kind"]},
        )
    except jwt.ExpiredSignatureError as error:
        raise InvalidCookieError("expired") from error
    except jwt.InvalidTokenError as error:
        raise InvalidCookieError(str(error) or type(error).__name__) from error
    if claims.get("kind") != kind:
        raise InvalidCookieError(f"expected a {kind} cookie")
    return claims


def session_cookie_path(request: Request) -> str:
    """Path of the login cookie: the setting, else the path of the c2c index page."""
    configured = config.settings.auth.jwt.cookie.path
    if configured is not None:
        return configured
    try:
        return request.url_for("c2c_index").path
    except NoMatchFound:
        return str(request.scope.get("root_path", "")).rstrip("/") + config.settings.route_prefix


def set_cookie(response: Response, name: str, value: str, max_age: int, path: str) -> None:
    """Set an HttpOnly cookie with the Secure and SameSite flags from the settings."""
    cookie = config.settings.auth.jwt.cookie
    response.set_cookie(
        key=name,
        value=value,
        max_age=max_age,
        path=path,
        httponly=True,
        secure=cookie.secure,
        samesite=cookie.same_site,
    )


def delete_cookie(response: Response, name: str, path: str) -> None:
    """Expire a cookie (same flags as when it was set, so browsers accept the deletion)."""
    cookie = config.settings.auth.jwt.cookie
    response.delete_cookie(key=name, path=path, httponly=True, secure=cookie.secure, samesite=cookie.same_site)
