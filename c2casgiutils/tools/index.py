"""The admin page at /c2c/ (a placeholder until the admin-page issue lands)."""

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from c2casgiutils._version import __version__

router = APIRouter()


@router.get("/", response_class=HTMLResponse, name="c2c_index")
async def index() -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>c2casgiutils</title></head>"
        f"<body><h1>c2casgiutils {__version__}</h1><p><a href='health_checks'>Health checks</a></p></body></html>"
    )
