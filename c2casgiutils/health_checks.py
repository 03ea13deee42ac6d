"""Health checks (filled in by the health-checks issue)."""

from fastapi import APIRouter

router = APIRouter()
