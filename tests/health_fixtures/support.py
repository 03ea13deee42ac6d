"""Helpers shared by the health check tests: the app with /c2c mounted, a client, simple checks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from c2casgiutils import health_checks


def fresh_factory(monkeypatch: pytest.MonkeyPatch) -> health_checks.Factory:
    """Replace the process-wide FACTORY for one test (the endpoint reads it at call time)."""
    factory = health_checks.Factory()
    monkeypatch.setattr(health_checks, "FACTORY", factory)
    return factory


def make_app() -> FastAPI:
    """A service that mounts the c2c sub-app at /c2c, as the specification shows."""
    import c2casgiutils

    main = FastAPI()
    main.mount("/c2c", c2casgiutils.app)
    return main


@asynccontextmanager
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=make_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://service", timeout=60) as http:
        yield http


class Fixed(health_checks.Check):
    """Answers a given result after an optional delay, and counts its runs."""

    def __init__(
        self, status_code: int = 200, payload: dict[str, Any] | None = None, delay: float = 0.0, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.status_code = status_code
        self.payload = payload or {}
        self.delay = delay
        self.runs = 0

    async def check(self) -> health_checks.Result:
        self.runs += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        return health_checks.Result(status_code=self.status_code, payload=self.payload)
