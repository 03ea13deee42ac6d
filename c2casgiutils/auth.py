"""Authentication of the admin tools (minimal placeholder until the auth issue lands).

The placeholder already gives the contract the other modules use: ``require_admin_access`` is a FastAPI
dependency that lets a request through with the shared secret (``X-API-Key`` header) and refuses it
otherwise.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, HTTPException, Request

from c2casgiutils import config

router = APIRouter()


def check_settings() -> None:
    """Stop start-up on an unsafe authentication configuration."""


async def require_admin_access(request: Request) -> None:
    """Refuse the request unless it carries admin rights."""
    secret = config.settings.auth.secret
    if secret is None:
        raise HTTPException(403, "Admin tools are closed: set C2C__AUTH__SECRET or GitHub authentication")
    given = request.headers.get("x-api-key", "")
    if not hmac.compare_digest(given.encode(), secret.encode()):
        raise HTTPException(401, "Missing or wrong secret")


async def has_admin_access(request: Request) -> bool:
    """Whether the request carries admin rights (without raising)."""
    try:
        await require_admin_access(request)
    except HTTPException:
        return False
    return True
