"""Logging levels tool (filled in by the broadcast issue)."""

from fastapi import APIRouter

router = APIRouter()


async def startup() -> None:
    """Restore the logging overrides stored in Redis."""
