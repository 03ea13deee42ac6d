"""GET /c2c/versions, and how differing processes are flagged."""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

import c2casgiutils
from c2casgiutils.tools import versions
from tests.servers import BlackHole, free_port

SECRET = "versions-test-secret-with-enough-length-0123456789"
ADMIN = {"X-API-Key": SECRET}


def _payload(**packages: str) -> dict[str, object]:
    return {"service_version": "1.0", "git_hash": None, "python": "3.11.2", "packages": packages}


def test_flag_the_odd_process() -> None:
    payloads = [
        _payload(fastapi="1.0", redis="5.0"),
        _payload(fastapi="1.0", redis="5.0"),
        _payload(fastapi="0.9", redis="5.0"),
    ]
    differences = versions.flag_differences(payloads)
    assert differences[0] == {}
    assert differences[1] == {}
    assert set(differences[2]) == {"fastapi"}
    assert differences[2]["fastapi"].this == "0.9"
    assert differences[2]["fastapi"].majority == "1.0"


def test_flag_missing_package_and_service_version() -> None:
    odd = _payload(fastapi="1.0")
    odd["service_version"] = "2.0"
    differences = versions.flag_differences(
        [_payload(fastapi="1.0", redis="5.0"), _payload(fastapi="1.0", redis="5.0"), odd]
    )
    assert set(differences[2]) == {"redis", "service_version"}
    assert differences[2]["redis"].this is None


def test_read_git_hash(tmp_path: Path) -> None:
    commit = "0123456789abcdef0123456789abcdef01234567"
    git = tmp_path / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    (git / "refs" / "heads" / "main").write_text(commit + "\n")
    assert versions.read_git_hash(git) == commit
    (git / "refs" / "heads" / "main").unlink()
    (git / "packed-refs").write_text(f"# pack-refs with: peeled\n{commit} refs/heads/main\n")
    assert versions.read_git_hash(git) == commit
    (git / "HEAD").write_text(commit)
    assert versions.read_git_hash(git) == commit
    (git / "HEAD").write_text("garbage")
    assert versions.read_git_hash(git) is None
    assert versions.read_git_hash(tmp_path / "nowhere") is None


@pytest.fixture
def app(settings) -> FastAPI:  # type: ignore[no-untyped-def]
    settings.auth.secret = SECRET
    versions.shutdown()
    service = FastAPI()
    service.mount("/c2c", c2casgiutils.app)
    return service


async def test_endpoint_is_admin_only(app: FastAPI) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        response = await http.get("/c2c/versions")
    assert response.status_code in (401, 403)


async def test_endpoint_reports_this_process(app: FastAPI, settings) -> None:  # type: ignore[no-untyped-def]
    settings.versions.service_distribution = "fastapi"
    settings.versions.git_hash = "fedcba9876543210fedcba9876543210fedcba98"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        response = await http.get("/c2c/versions", headers=ADMIN)
    assert response.status_code == 200
    body = response.json()
    assert body["consistent"] is True
    (process,) = body["processes"]
    assert process["pid"] == os.getpid()
    assert process["service_version"] == importlib.metadata.version("fastapi")
    assert process["git_hash"] == settings.versions.git_hash
    assert process["packages"]["pydantic"] == importlib.metadata.version("pydantic")
    assert process["differs"] is False


async def test_explicit_service_version_wins(app: FastAPI, settings) -> None:  # type: ignore[no-untyped-def]
    settings.versions.service_distribution = "fastapi"
    settings.versions.service_version = "7.7.7"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        body = (await http.get("/c2c/versions", headers=ADMIN)).json()
    assert body["processes"][0]["service_version"] == "7.7.7"


REDIS_PASSWORD = "versions-redis-Secret-4711"


@pytest.fixture(params=["user-info", "query", "black-hole"])
async def redis_down(request: pytest.FixtureRequest, settings) -> AsyncIterator[str]:  # type: ignore[no-untyped-def]
    """Broadcast on a configured Redis that refuses connections, or accepts them and never answers."""
    from c2casgiutils import broadcast, redis_utils

    hole = BlackHole() if request.param == "black-hole" else None
    port = hole.port if hole is not None else free_port()
    if request.param == "user-info":
        settings.redis.url = f"redis://app:{REDIS_PASSWORD}@127.0.0.1:{port}/0"
    else:
        settings.redis.url = f"redis://127.0.0.1:{port}/0?username=app&password={REDIS_PASSWORD}"
    settings.redis.sentinels = None
    settings.redis.connect_timeout = timedelta(seconds=0.2)
    settings.redis.socket_timeout = timedelta(seconds=0.2)
    await broadcast.startup()
    await versions.startup()
    try:
        yield settings.redis.url
    finally:
        versions.shutdown()
        await broadcast.shutdown()
        await redis_utils.cleanup()
        if hole is not None:
            hole.close()


async def test_redis_down_gives_503_with_the_reason(app: FastAPI, redis_down: str) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        response = await http.get("/c2c/versions", headers=ADMIN)
    assert response.status_code == 503
    detail = response.json()["detail"]
    assert detail.startswith("/c2c/versions needs the broadcast to every process, which is unavailable: ")
    assert REDIS_PASSWORD not in response.text
    assert int(response.headers["Retry-After"]) >= 1
