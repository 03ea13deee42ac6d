"""Admin tool: headers (filled in by the admin-page issue)."""

from fastapi import APIRouter

router = APIRouter()
