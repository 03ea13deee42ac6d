"""Endpoints under ``/c2c/auth``: login/logout with the secret, status, GitHub OAuth login and callback."""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import urllib.parse
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response, status
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.requests import ClientDisconnect
from starlette.routing import NoMatchFound

from c2casgiutils import audit, config
from c2casgiutils.auth import _cookies, _github, _rate_limit, _session
from c2casgiutils.auth._access import AccessContext, get_auth, github_error_to_http, secret_matches
from c2casgiutils.auth._came_from import validate_came_from
from c2casgiutils.auth._configuration import auth_type, github_enabled, secret_enabled
from c2casgiutils.auth._models import AuthInfo, AuthMethod, AuthStatus

_LOGGER = logging.getLogger(__name__)
_MAX_LOGIN_BODY_BYTES = 16 * 1024
_NO_STORE = {"Cache-Control": "no-store"}
# nginx's "client closed request": counted as a client error, never as a server error.
CLIENT_CLOSED_REQUEST = 499

router = APIRouter()


def _index_url(request: Request) -> str:
    try:
        return str(request.url_for("c2c_index"))
    except NoMatchFound:
        return str(request.scope.get("root_path", "")).rstrip("/") + config.settings.route_prefix


def _done(request: Request, came_from: str | None, message: str) -> Response:
    if came_from:
        return RedirectResponse(came_from, status_code=status.HTTP_303_SEE_OTHER, headers=_NO_STORE)
    del request
    return JSONResponse({"status": "success", "message": message}, headers=_NO_STORE)


async def _secret_login(request: Request, secret: str | None, came_from: str | None) -> Response:
    if not secret_enabled():
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail="Login with a secret is not configured: set C2C__AUTH__SECRET"
            + (" or use auth/github/login" if github_enabled() else ""),
        )
    target = validate_came_from(request, came_from)
    await _rate_limit.ensure_not_blocked(request, AuthMethod.SECRET.value)
    if not secret:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="Missing secret (the 'secret' field or X-API-Key)")
    if not secret_matches(secret):
        await _rate_limit.record_failure(request, AuthMethod.SECRET.value, "wrong secret")
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="Invalid secret")
    response = _done(request, target, "Authentication successful")
    _session.write_secret_login(request, response)
    method = AuthMethod.SECRET.value
    audit.record(request, audit.Event.LOGIN, audit.Outcome.SUCCESS, actor=method, method=method)
    return response


@router.get("/login", name="c2c_auth_login")
async def login(
    request: Request,
    secret: Annotated[str | None, Query(description="The secret (discouraged: it ends up in access logs)")] = None,
    came_from: Annotated[str | None, Query(description="Where to go after login (same host only)")] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> Response:
    """Log in with the shared secret and set the login cookie."""
    return await _secret_login(request, x_api_key or secret, came_from)


async def _read_login_body(request: Request) -> dict[str, Any]:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_LOGIN_BODY_BYTES:
            raise HTTPException(413, detail="Login body too large")
    if not body:
        return {}
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=f"Invalid JSON body: {error}") from error
        if not isinstance(data, dict):
            raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="Expected a JSON object with 'secret'")
        return data
    if content_type in ("application/x-www-form-urlencoded", ""):
        try:
            return dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
        except UnicodeDecodeError as error:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="The form is not UTF-8") from error
    raise HTTPException(
        status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
        detail="Send the secret as application/x-www-form-urlencoded or application/json",
    )


@router.post("/login", name="c2c_auth_login_post")
async def login_post(request: Request, x_api_key: Annotated[str | None, Header()] = None) -> Response:
    """Log in with the shared secret from a form or a JSON body (``secret``, optional ``came_from``)."""
    try:
        data = await _read_login_body(request)
    except ClientDisconnect:  # nobody is left to answer: not a server error
        _LOGGER.debug("The client disconnected while sending its login body")
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    secret = data.get("secret")
    came_from = data.get("came_from") or request.query_params.get("came_from")
    if (secret is not None and not isinstance(secret, str)) or (
        came_from is not None and not isinstance(came_from, str)
    ):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="'secret' and 'came_from' must be strings")
    return await _secret_login(request, x_api_key or secret, came_from)


def _clear_login(request: Request, response: Response) -> None:
    """Delete the login cookie: one ``logout`` record naming whom the cookie was for."""
    audit.record(request, audit.Event.LOGOUT, audit.Outcome.SUCCESS, actor=_session.login_actor(request))
    _session.clear_login(request, response)


async def _logout(request: Request, came_from: str | None) -> Response:
    target = validate_came_from(request, came_from)
    response = _done(request, target, "Logged out")
    _clear_login(request, response)
    return response


@router.get("/logout", name="c2c_auth_logout")
async def logout(request: Request, came_from: Annotated[str | None, Query()] = None) -> Response:
    """Delete the login cookie."""
    return await _logout(request, came_from)


@router.post("/logout", name="c2c_auth_logout_post")
async def logout_post(request: Request, came_from: Annotated[str | None, Query()] = None) -> Response:
    """Delete the login cookie."""
    return await _logout(request, came_from)


@router.get("/status", name="c2c_auth_status", response_model=AuthStatus)
async def auth_status(request: Request, response: Response) -> AuthStatus:
    """Whether the request is logged in, how, as whom, and whether it is admin. Never returns a token."""
    response.headers.update(_NO_STORE)
    error: str | None = None
    try:
        info = await get_auth(request, response)
    except HTTPException as exception:
        if exception.status_code == status.HTTP_429_TOO_MANY_REQUESTS:
            raise
        info, error = AuthInfo(is_logged_in=False), str(exception.detail)
    is_admin = False
    if info.is_logged_in:
        context = AccessContext(info, request, response)
        try:
            is_admin = await context.check_admin_access()
        except HTTPException as exception:
            error = str(exception.detail)
        info = context.auth_info
    methods = [name for name, enabled in (("secret", secret_enabled()), ("github", github_enabled())) if enabled]
    return AuthStatus(
        is_logged_in=info.is_logged_in,
        type=info.type,
        user=info.user,
        is_admin=is_admin,
        auth_type=auth_type().name.lower(),
        methods=methods,
        error=error,
    )


def _require_github() -> None:
    if not github_enabled():
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail="GitHub authentication is not configured: set C2C__AUTH__GITHUB__REPOSITORY, "
            "C2C__AUTH__GITHUB__CLIENT_ID, C2C__AUTH__GITHUB__CLIENT_SECRET and C2C__AUTH__JWT__SECRET",
        )


def _redirect_uri(request: Request) -> str:
    """The URL GitHub sends the browser back to (through ``proxy_url`` when one is configured)."""
    callback_url = str(request.url_for("c2c_github_callback"))
    proxy_url = config.settings.auth.github.proxy_url
    if proxy_url is None:
        return callback_url
    separator = "&" if "?" in proxy_url else "?"
    return f"{proxy_url}{separator}{urllib.parse.urlencode({'came_from': callback_url})}"


def _state_cookie_path(request: Request) -> str:
    return request.url_for("c2c_github_callback").path


@router.get("/github/login", name="c2c_github_login")
async def github_login(request: Request, came_from: Annotated[str | None, Query()] = None) -> Response:
    """Start the GitHub OAuth flow: set the state cookie and redirect to GitHub's authorize page."""
    _require_github()
    target = validate_came_from(request, came_from)
    github = config.settings.auth.github
    state = secrets.token_urlsafe(32)
    params = {
        "client_id": github.client_id or "",
        "redirect_uri": _redirect_uri(request),
        "scope": github.scope,
        "state": state,
        "response_type": "code",
    }
    separator = "&" if "?" in github.authorize_url else "?"
    response = RedirectResponse(f"{github.authorize_url}{separator}{urllib.parse.urlencode(params)}", headers=_NO_STORE)
    age = max(int(github.state_cookie_age.total_seconds()), 1)
    state_token = _cookies.encode("state", {"state": state, "came_from": target}, _session.github_key(), age)
    _cookies.set_cookie(response, github.state_cookie, state_token, age, _state_cookie_path(request))
    return response


def _callback_error(
    request: Request, status_code: int, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    audit.record(
        request,
        audit.Event.LOGIN,
        audit.Outcome.FAILURE,
        actor=None,
        method=AuthMethod.GITHUB_OAUTH.value,
        reason=message,
        status=status_code,
    )
    response = JSONResponse({"detail": message}, status_code=status_code, headers={**_NO_STORE, **(headers or {})})
    _cookies.delete_cookie(response, config.settings.auth.github.state_cookie, _state_cookie_path(request))
    return response


class _CallbackError(Exception):
    def __init__(self, status_code: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.headers = headers


def _checked_state(request: Request, state: str | None) -> dict[str, Any]:
    """The claims of the state cookie, once it is valid and matches the ``state`` parameter."""
    state_token = request.cookies.get(config.settings.auth.github.state_cookie)
    if not state_token:
        raise _CallbackError(
            400, "Missing OAuth state cookie: start again from auth/github/login (cookies must be enabled)"
        )
    try:
        claims = _cookies.decode(state_token, "state", _session.github_key())
    except _cookies.InvalidCookieError as exception:
        raise _CallbackError(400, f"Invalid OAuth state cookie ({exception}): start the login again") from None
    expected_state = claims.get("state")
    if not state:
        raise _CallbackError(400, "Missing 'state' parameter")
    if not isinstance(expected_state, str) or not hmac.compare_digest(state.encode(), expected_state.encode()):
        raise _CallbackError(400, "OAuth state mismatch: start the login again")
    return claims


@router.get("/github/callback", name="c2c_github_callback")
async def github_callback(
    request: Request,
    state: Annotated[str | None, Query()] = None,
    code: Annotated[str | None, Query()] = None,
    error: Annotated[str | None, Query()] = None,
    error_description: Annotated[str | None, Query()] = None,
) -> Response:
    """End the GitHub OAuth flow: check the state, exchange the code, read the user, open the session."""
    _require_github()
    try:
        claims = _checked_state(request, state)
        if error:
            raise _CallbackError(403, f"GitHub refused the login: {error_description or error} ({error})")
        if not code:
            raise _CallbackError(400, "Missing 'code' parameter")
        came_from = claims.get("came_from")
        target = validate_came_from(request, came_from if isinstance(came_from, str) else None)
        try:
            tokens = await _github.exchange_code(code, _redirect_uri(request))
            user = await _github.get_user(tokens.access_token, cached=False)
        except _github.GitHubError as exception:
            http_error = github_error_to_http(exception)
            raise _CallbackError(http_error.status_code, exception.message, http_error.headers) from None
    except _CallbackError as exception:
        return _callback_error(request, exception.status_code, exception.message, exception.headers)

    response = RedirectResponse(target or _index_url(request), status_code=status.HTTP_303_SEE_OTHER, headers=_NO_STORE)
    _cookies.delete_cookie(response, config.settings.auth.github.state_cookie, _state_cookie_path(request))
    _session.write_github_login(request, response, user, tokens)
    audit.record(
        request, audit.Event.LOGIN, audit.Outcome.SUCCESS, actor=user.login, method=AuthMethod.GITHUB_OAUTH.value
    )
    return response


@router.get("/github/logout", name="c2c_github_logout")
async def github_logout(request: Request, came_from: Annotated[str | None, Query()] = None) -> Response:
    """Delete the login cookie and go back to ``came_from`` (or the admin page)."""
    target = validate_came_from(request, came_from) or _index_url(request)
    response = RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER, headers=_NO_STORE)
    _clear_login(request, response)
    return response
