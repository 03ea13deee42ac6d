"""Health checks: register checks on ``FACTORY``; the /c2c sub-app serves them at ``/c2c/health_checks``.

    from c2casgiutils import health_checks

    health_checks.FACTORY.add(health_checks.Redis(tags=["liveness", "redis", "all"]))
    health_checks.FACTORY.add(health_checks.SQLAlchemy(Session=async_sessionmaker_, tags=["database", "all"]))

``GET /c2c/health_checks?tags=a,b&name=X`` runs the selected checks concurrently, each bounded by its
timeout, and answers with the worst status. The same endpoint answers at ``/c2c/health/`` (the path of
the reference package 0.14). See docs/health_checks.md.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response

from c2casgiutils import auth, config
from c2casgiutils._health.alembic_check import Alembic
from c2casgiutils._health.check import Check, Wrong
from c2casgiutils._health.factory import Factory, UnknownCheckError, parse_tags
from c2casgiutils._health.http_check import HTTP
from c2casgiutils._health.masking import mask_payload, mask_text
from c2casgiutils._health.models import EntityResult, GlobalResult, Result
from c2casgiutils._health.redis_check import Redis
from c2casgiutils._health.sqlalchemy_check import SQLAlchemy

__all__ = [
    "FACTORY",
    "HTTP",
    "Alembic",
    "Check",
    "EntityResult",
    "Factory",
    "GlobalResult",
    "Redis",
    "Result",
    "SQLAlchemy",
    "UnknownCheckError",
    "Wrong",
    "c2c_health_checks",
    "mask_payload",
    "mask_text",
    "parse_tags",
    "router",
]

FACTORY = Factory()
"""The checks of this process, served by the endpoint."""

router = APIRouter()


async def _may_see_payloads(request: Request) -> bool:
    """Payloads are shown to everyone unless C2C__HEALTH_CHECKS__DETAILED_PAYLOADS=false; admins see them."""
    if config.settings.health_checks.detailed_payloads:
        return True
    return await auth.has_admin_access(request)


@router.get(
    "/health_checks",
    response_model=GlobalResult,
    summary="Run the health checks",
    responses={404: {"description": "No check has the given name"}},
)
@router.get("/health_checks/", response_model=GlobalResult, include_in_schema=False)
@router.get("/health/", response_model=GlobalResult, include_in_schema=False)
async def c2c_health_checks(
    request: Request,
    response: Response,
    name: Annotated[str | None, Query(description="Run only the check(s) with this name")] = None,
    tags: Annotated[
        list[str] | None, Query(description="Run only the checks having any of these comma-separated tags")
    ] = None,
) -> GlobalResult:
    """Run the selected checks concurrently; the HTTP status is the worst status of the checks run."""
    factory = FACTORY  # read at call time: a test or service may replace the module's FACTORY
    try:
        result = await factory.run(name=name, tags=tags)
    except UnknownCheckError as error:
        raise HTTPException(status_code=404, detail=str(error)) from None
    if not await _may_see_payloads(request):
        for entity in result.entities:
            entity.payload = {}
    response.status_code = result.status_code
    response.headers["Cache-Control"] = "no-store"
    return result
