"""Drive uvicorn's real HTTP protocol (httptools) in one process, with a transport that discards the output.

Every byte of a request goes through the same code as in a served uvicorn: the httptools parser, the
scope, the ASGI task, the application, and uvicorn's ``send`` that validates and serialises each response
header. Only the kernel and the load generator are left out, so two stacks compare within about 1 % where
the same comparison over sockets moves by 5 %. Requests are sent one after the other on one keep-alive
connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import time
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState


class DiscardingTransport(asyncio.Transport):
    """Takes what uvicorn writes and keeps only the status codes; says it is a TCP peer on 127.0.0.1."""

    def __init__(self) -> None:
        super().__init__()
        self.statuses: dict[bytes, int] = {}
        self._closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        chunk = bytes(data[:12])
        if chunk.startswith(b"HTTP/1.1 "):
            self.statuses[chunk[9:12]] = self.statuses.get(chunk[9:12], 0) + 1

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class InProcessServer:
    """One keep-alive connection of a uvicorn server around ``app``, fed from memory."""

    def __init__(self, app: Any, loop: asyncio.AbstractEventLoop) -> None:
        config = Config(
            app=app,
            http="httptools",
            loop="none",
            lifespan="off",
            access_log=False,
            proxy_headers=False,
            timeout_keep_alive=86400,  # rounds of other stacks must not time the idle connection out
        )
        config.load()
        self.transport = DiscardingTransport()
        self.protocol = HttpToolsProtocol(config, ServerState(), {}, _loop=loop)
        self.protocol.connection_made(self.transport)

    async def run(self, request: bytes, count: int, timeout: float | None = None) -> float:
        """Send ``request`` ``count`` times, each after the previous response; µs per request.

        An application that never answers raises TimeoutError after ``timeout`` seconds (by default 30 s
        plus 10 ms per request) instead of spinning forever.
        """
        bound = 30 + count * 0.01 if timeout is None else timeout
        return await asyncio.wait_for(self._run(request, count), bound)

    async def _run(self, request: bytes, count: int) -> float:
        protocol = self.protocol
        start = time.perf_counter()
        for _ in range(count):
            protocol.data_received(request)
            while protocol.cycle is not None and not protocol.cycle.response_complete:
                await asyncio.sleep(0)
            await asyncio.sleep(0)  # let the ASGI task return after its last message
        elapsed = time.perf_counter() - start
        if self.transport._closing:
            raise RuntimeError("uvicorn closed the connection: the application failed")
        return elapsed / count * 1e6

    def check_ok(self) -> None:
        if set(self.transport.statuses) != {b"200"}:
            raise RuntimeError(f"responses other than 200: {self.transport.statuses}")


def alternating_rounds(apps: dict[str, Any], request: bytes, rounds: int, requests: int) -> dict[str, list[float]]:
    """µs per request of each app, one figure per round, the order reversed every other round, on one core.

    Each app gets its own keep-alive connection and a warm-up; the garbage of set-up is frozen first so that the
    collections of one app do not lengthen another's rounds.
    """
    import uvloop

    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {0})

    async def measure() -> dict[str, list[float]]:
        loop = asyncio.get_running_loop()
        servers = {name: InProcessServer(app, loop) for name, app in apps.items()}
        for server in servers.values():
            await server.run(request, 1000)  # warm up: caches of the middlewares, FastAPI, the CPU
        gc.collect()
        gc.freeze()
        names = list(servers)
        samples: dict[str, list[float]] = {name: [] for name in names}
        for index in range(rounds):
            for name in names if index % 2 == 0 else names[::-1]:
                samples[name].append(await servers[name].run(request, requests))
        for server in servers.values():
            server.check_ok()
        return samples

    return uvloop.run(measure())
