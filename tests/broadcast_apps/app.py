"""A small service run by uvicorn with several workers in the broadcast tests (configured by C2C__ variables)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel

import c2casgiutils
from c2casgiutils import broadcast, redis_utils
from c2casgiutils.broadcast import MissingAnswer
from c2casgiutils.broadcast import types as broadcast_types

ECHO_CHANNEL = "test_echo"
LEVEL_CHANNEL = "test_level_of"


class EchoResponse(BaseModel):
    """What every process answers to an echo."""

    message: str
    pid: int


class EchoHandlerProto(Protocol):
    async def __call__(
        self, *, message: str, hang_pid: int | None = None, fail_pid: int | None = None
    ) -> list[broadcast_types.BroadcastResponse[EchoResponse] | MissingAnswer] | None: ...


echo_handler: EchoHandlerProto = None  # type: ignore[assignment]


async def _echo_handler(*, message: str, hang_pid: int | None = None, fail_pid: int | None = None) -> EchoResponse:
    pid = os.getpid()
    if hang_pid == pid:
        # Tell the test this process received the message, then never answer (the test kills it).
        clients = redis_utils.get()
        assert clients is not None
        await clients.master.set(f"test:hanging:{pid}", "1", ex=60)
        await asyncio.sleep(60)
    if fail_pid == pid:
        raise RuntimeError(f"failure requested in process {pid}")
    return EchoResponse(message="Broadcast echo: " + message, pid=pid)


def _level_of(*, name: str) -> dict[str, str]:
    logger = logging.getLogger(name)
    return {
        "level": logging.getLevelName(logger.level),
        "effective_level": logging.getLevelName(logger.getEffectiveLevel()),
    }


@asynccontextmanager
async def _lifespan(main_app: FastAPI) -> AsyncIterator[None]:
    await c2casgiutils.startup(main_app)
    global echo_handler  # noqa: PLW0603
    echo_handler = await broadcast.decorate(_echo_handler, channel=ECHO_CHANNEL, expect_answers=True, timeout=5)
    await broadcast.subscribe(LEVEL_CHANNEL, _level_of)
    yield
    await c2casgiutils.shutdown(main_app)


app = FastAPI(lifespan=_lifespan)
app.mount("/c2c", c2casgiutils.app)


@app.get("/pid")
async def pid() -> dict[str, Any]:
    return {"pid": os.getpid(), "backend": broadcast.backend_name(), "connected": broadcast.is_connected()}


@app.get("/echo", response_model=None)
async def echo(message: str) -> list[dict[str, Any]] | JSONResponse:
    try:
        answers = await echo_handler(message=message)
    except broadcast.BroadcastUnavailableError as error:
        return JSONResponse(status_code=503, content={"detail": str(error)})
    assert answers is not None
    result = []
    for answer in answers:
        if isinstance(answer, broadcast_types.BroadcastResponse):
            assert isinstance(answer.payload, EchoResponse)  # rebuilt from the return type hint
            result.append({"kind": "response", **answer.model_dump()})
        else:
            result.append({"kind": type(answer).__name__, **answer.model_dump()})
    return result


@app.get("/levels")
async def levels(name: str) -> list[dict[str, Any]]:
    """The level of logger ``name`` in every process (through the broadcast), with who answered."""
    answers = await broadcast.broadcast(LEVEL_CHANNEL, {"name": name}, expect_answers=True, timeout=5)
    assert answers is not None
    return [
        {"kind": "response", "pid": a.pid, **a.payload}
        if isinstance(a, broadcast_types.BroadcastResponse)
        else {"kind": type(a).__name__, "pid": a.pid}
        for a in answers
    ]
