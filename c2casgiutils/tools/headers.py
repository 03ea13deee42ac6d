"""Admin tool: the request as the service sees it (headers, URL parts, scope), after proxy handling.

``GET /c2c/headers``, ``/c2c/headers/{a}`` and ``/c2c/headers/{a}/{b}`` (the extra segments and the query
string let an operator check how a proxy rewrites paths). Values that carry credentials are masked.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from starlette.datastructures import URL

from c2casgiutils import auth

router = APIRouter()

MASK = "*****"
# Headers whose value is a credential: shown masked, never echoed.
MASKED_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization", "x-api-key", "set-cookie"})
# Any header or query parameter whose name contains one of these words is masked too (X-Auth-Token,
# X-Amz-Security-Token, ?secret=, ?access_token=...): better a masked harmless value than an echoed key.
_SENSITIVE_WORDS = ("auth", "cookie", "token", "secret", "password", "passwd", "api-key", "apikey", "api_key")

Scalar = str | int | float | bool | None


class UrlParts(BaseModel):
    """A URL split into its parts."""

    url: str
    scheme: str
    netloc: str
    hostname: str | None
    port: int | None
    path: str
    query: str


class HeadersResponse(BaseModel):
    """What the service sees of the request."""

    headers: dict[str, str] = Field(description="Request headers; repeated headers joined with ', '")
    url: UrlParts
    base_url: UrlParts
    query_params: dict[str, str]
    path_params: dict[str, str]
    client: str | None = Field(description="Client address as host:port, after proxy handling")
    scope: dict[str, Scalar | list[Scalar]] = Field(description="Simple values of the ASGI scope")


def is_sensitive(name: str) -> bool:
    """Whether a header or query parameter of this name carries a credential (its value is masked)."""
    lowered = name.lower()
    return lowered in MASKED_HEADERS or any(word in lowered for word in _SENSITIVE_WORDS)


def _masked_query(url: URL) -> URL:
    if not url.query:
        return url
    pairs = urllib.parse.parse_qsl(url.query, keep_blank_values=True)
    if not any(is_sensitive(name) for name, _ in pairs):
        return url
    return url.replace(
        query=urllib.parse.urlencode([(name, MASK if is_sensitive(name) else value) for name, value in pairs])
    )


def _url_parts(url: URL) -> UrlParts:
    url = _masked_query(url)
    return UrlParts(
        url=str(url),
        scheme=url.scheme,
        netloc=url.netloc,
        hostname=url.hostname,
        port=url.port,
        path=url.path,
        query=url.query,
    )


def _masked_headers(request: Request) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        shown = MASK if is_sensitive(name) else value
        headers[name] = f"{headers[name]}, {shown}" if name in headers else shown
    return headers


def _scope_values(scope: Mapping[str, Any]) -> dict[str, Scalar | list[Scalar]]:
    values: dict[str, Scalar | list[Scalar]] = {}
    for key, value in scope.items():
        if isinstance(value, str | int | float | bool) or value is None:
            values[key] = value
        elif key in ("client", "server") and isinstance(value, list | tuple):
            values[key] = [item if isinstance(item, str | int) else str(item) for item in value]
    return values


def describe_request(request: Request) -> HeadersResponse:
    """Describe the request, credentials masked."""
    client = request.client
    return HeadersResponse(
        headers=_masked_headers(request),
        url=_url_parts(request.url),
        base_url=_url_parts(request.base_url),
        query_params={name: MASK if is_sensitive(name) else value for name, value in request.query_params.items()},
        path_params={key: str(value) for key, value in request.path_params.items()},
        client=f"{client.host}:{client.port}" if client else None,
        scope=_scope_values(request.scope),
    )


AdminAccess = Annotated[None, Depends(auth.require_admin_access)]


@router.get("/headers", name="c2c_headers")
async def c2c_headers(request: Request, _: AdminAccess) -> HeadersResponse:
    """The request as the service sees it."""
    return describe_request(request)


@router.get("/headers/{path_1}", name="c2c_headers_1")
async def c2c_headers_1(request: Request, path_1: str, _: AdminAccess) -> HeadersResponse:
    """The request as the service sees it, with one extra path segment."""
    del path_1  # shown in path_params
    return describe_request(request)


@router.get("/headers/{path_1}/{path_2}", name="c2c_headers_2")
async def c2c_headers_2(request: Request, path_1: str, path_2: str, _: AdminAccess) -> HeadersResponse:
    """The request as the service sees it, with two extra path segments."""
    del path_1, path_2  # shown in path_params
    return describe_request(request)
