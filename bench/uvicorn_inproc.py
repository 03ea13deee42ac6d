"""Drive uvicorn's real HTTP protocol (httptools) in one process, with a transport that discards the output.

Every byte of a request goes through the same code as in a served uvicorn: the httptools parser, the
scope, the ASGI task, the application, and uvicorn's ``send`` that validates and serialises each response
header. Only the kernel and the load generator are left out, so two stacks compare within about 1 % where
the same comparison over sockets moves by 5 %. Requests are sent one after the other on one keep-alive
connection.

On a machine shared with other jobs, ``clock=time.thread_time`` counts only the CPU time this thread got, not
the time other processes held the core: far steadier than the wall clock when the machine is loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import time
from collections.abc import Callable, Sequence
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

    def __init__(
        self, app: Any, loop: asyncio.AbstractEventLoop, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.clock = clock
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

    async def run(self, request: bytes | Sequence[bytes], count: int, timeout: float | None = None) -> float:
        """Send ``request`` ``count`` times, each after the previous response; µs per request.

        ``request`` may also be a sequence of requests (at least ``count``): the i-th is sent i-th, e.g. a new
        path each time. An application that never answers raises TimeoutError after ``timeout`` seconds (by
        default 30 s plus 10 ms per request) instead of spinning forever.
        """
        requests = [request] * count if isinstance(request, bytes) else request
        if len(requests) < count:
            raise ValueError(f"{count} requests wanted, {len(requests)} given")
        bound = 30 + count * 0.01 if timeout is None else timeout
        return await asyncio.wait_for(self._run(requests, count), bound)

    async def _run(self, requests: Sequence[bytes], count: int) -> float:
        protocol = self.protocol
        clock = self.clock
        start = clock()
        for index in range(count):
            protocol.data_received(requests[index])
            while protocol.cycle is not None and not protocol.cycle.response_complete:
                await asyncio.sleep(0)
            await asyncio.sleep(0)  # let the ASGI task return after its last message
        elapsed = clock() - start
        if self.transport._closing:
            raise RuntimeError("uvicorn closed the connection: the application failed")
        return elapsed / count * 1e6

    def check_ok(self) -> None:
        if set(self.transport.statuses) != {b"200"}:
            raise RuntimeError(f"responses other than 200: {self.transport.statuses}")


def alternating_rounds(
    apps: dict[str, Any], request: bytes, rounds: int, requests: int, clock: Callable[[], float] = time.perf_counter
) -> dict[str, list[float]]:
    """µs per request of each application, one figure per round, on one core under uvloop.

    Each is warmed up (1000 requests), then every round times ``requests`` requests of each in turn, the order
    reversed every other round so that a slow moment of the machine hits them alike.
    """
    def order(index: int, names: list[str]) -> list[str]:
        return names if index % 2 == 0 else names[::-1]

    return _timed_rounds(apps, request, rounds, requests, clock, order)


def paired_rounds(
    apps: dict[str, Any],
    request: bytes,
    rounds: int,
    requests: int,
    clock: Callable[[], float] = time.thread_time,
    seed: int = 0,
) -> dict[str, list[float]]:
    """µs per request of each application in many short rounds, the order shuffled every round, on one core.

    Meant for :func:`paired_extra`: a difference taken within a round cancels what slows the machine for a few
    milliseconds, and the median over hundreds of rounds ignores the rounds a neighbour spoiled, where the best
    of a few long rounds keeps the luckiest one. Warm-up as in :func:`alternating_rounds`.
    """
    import random

    shuffled = random.Random(seed).sample
    return _timed_rounds(apps, request, rounds, requests, clock, lambda _, names: shuffled(names, len(names)))


def _timed_rounds(
    apps: dict[str, Any],
    request: bytes,
    rounds: int,
    requests: int,
    clock: Callable[[], float],
    order: Callable[[int, list[str]], list[str]],
) -> dict[str, list[float]]:
    """Warm every application up, then time ``rounds`` rounds, each serving them in ``order(round, names)``."""
    import uvloop

    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {0})

    async def run() -> dict[str, list[float]]:
        loop = asyncio.get_running_loop()
        servers = {name: InProcessServer(app, loop, clock) for name, app in apps.items()}
        for server in servers.values():
            await server.run(request, 1000)  # warm up: caches of the middlewares, FastAPI, the CPU
        gc.collect()
        gc.freeze()  # the other applications must not lengthen the collections of this one
        names = list(servers)
        samples: dict[str, list[float]] = {name: [] for name in names}
        for index in range(rounds):
            for name in order(index, names):
                samples[name].append(await servers[name].run(request, requests))
        for server in servers.values():
            server.check_ok()
        return samples

    return uvloop.run(run())


def paired_extra(samples: dict[str, list[float]], base: str) -> dict[str, tuple[float, float, float]]:
    """For each application: the median, first and third quartiles of its round-by-round excess over ``base``."""
    import statistics

    result = {}
    for name, values in samples.items():
        differences = [value - reference for value, reference in zip(values, samples[base], strict=True)]
        if len(differences) < 2:
            result[name] = (differences[0], differences[0], differences[0])
            continue
        first, _, third = statistics.quantiles(differences, n=4)
        result[name] = (statistics.median(differences), first, third)
    return result


def counted(run: Callable[[], Any]) -> None:
    """Call ``run`` under ``functools.reduce``: the only function that :func:`instructions` counts within."""
    import functools

    functools.reduce(lambda _, __: run(), [None], None)


def instructions(command: list[str], requests: int) -> float:
    """Instructions per request of ``command`` (a Python child that serves ``requests`` requests in
    :func:`counted`), counted by valgrind's callgrind: the same figure on every run, whatever the load."""
    import re
    import subprocess

    valgrind = ["valgrind", "--tool=callgrind", "--collect-atstart=no", "--toggle-collect=functools_reduce"]
    valgrind.append("--callgrind-out-file=/dev/null")
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    result = subprocess.run([*valgrind, *command], capture_output=True, text=True, timeout=1800, check=True, env=env)
    found = re.search(r"Collected : (\d+)", result.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{result.stderr[-2000:]}")
    return int(found[1]) / requests

