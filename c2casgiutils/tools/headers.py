"""Admin tool: the request as the service sees it (headers, URL parts, scope), after proxy handling.

``GET /c2c/headers``, ``/c2c/headers/{a}`` and ``/c2c/headers/{a}/{b}`` (the extra segments and the query
string let an operator check how a proxy rewrites paths). Values that carry credentials are masked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from starlette.datastructures import URL

from c2casgiutils import audit, auth
from c2casgiutils._sensitive import MASK, is_sensitive, mask_query

router = APIRouter()

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


def _masked_query(url: URL) -> URL:
    masked = mask_query(url.query)
    return url if masked == url.query else url.replace(query=masked)


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


def _audited(request: Request) -> HeadersResponse:
    """The description, with its ``admin_tool`` audit record (the path, never the query: it may hold a secret)."""
    with audit.action(request, audit.Event.ADMIN_TOOL, tool="headers", path=request.url.path):
        return describe_request(request)


@router.get("/headers", name="c2c_headers")
async def c2c_headers(request: Request, _: AdminAccess) -> HeadersResponse:
    """The request as the service sees it."""
    return _audited(request)


@router.get("/headers/{path_1}", name="c2c_headers_1")
async def c2c_headers_1(request: Request, path_1: str, _: AdminAccess) -> HeadersResponse:
    """The request as the service sees it, with one extra path segment."""
    del path_1  # shown in path_params
    return _audited(request)


@router.get("/headers/{path_1}/{path_2}", name="c2c_headers_2")
async def c2c_headers_2(request: Request, path_1: str, path_2: str, _: AdminAccess) -> HeadersResponse:
    """The request as the service sees it, with two extra path segments."""
    del path_1, path_2  # shown in path_params
    return _audited(request)
