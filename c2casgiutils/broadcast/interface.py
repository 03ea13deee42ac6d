"""The small interface every backend (in-process, Redis pub/sub, or another) implements, and the handler registry.

The registry (channel -> callback) belongs to the process, not to a backend: switching from the local
backend to Redis at start-up hands the same registry to the new backend, so no subscription is lost.
``broadcast.startup`` only calls the methods of :class:`Backend`: a backend is a class with this interface
whose constructor takes the registry and the hook to run after each (re)connection (:data:`BackendFactory`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Generator, Mapping
from typing import Any, Protocol

from pydantic import BaseModel, Field
from pydantic_core import to_jsonable_python

from c2casgiutils.broadcast.types import MissingAnswer

_LOGGER = logging.getLogger(__name__)

Callback = Callable[..., Any]
"""A handler: called with the broadcast parameters as keyword arguments; may be sync or async."""


class RawAnswer(BaseModel):
    """The answer of one process as it travels (JSON), before the caller rebuilds typed payloads."""

    hostname: str
    pid: int
    ok: bool = True
    payload: Any = None
    error_type: str | None = None
    error_message: str | None = None
    process: str | None = None  # the answering listener's token (``<host>.<pid>.<random>``), Redis only


class ProcessIdentity(BaseModel):
    """Who answers: read when a backend starts (uvicorn workers are separate processes)."""

    hostname: str = Field(default_factory=socket.gethostname)
    pid: int = Field(default_factory=os.getpid)


class Registry:
    """The handlers of this process, by channel (one handler per channel; subscribing again replaces it)."""

    def __init__(self) -> None:
        self._callbacks: dict[str, Callback] = {}

    def add(self, channel: str, callback: Callback) -> None:
        if not callable(callback):
            raise TypeError(f"the callback of channel {channel!r} is not callable: {callback!r}")
        self._callbacks[channel] = callback

    def remove(self, channel: str) -> bool:
        return self._callbacks.pop(channel, None) is not None

    def channels(self) -> list[str]:
        return list(self._callbacks)

    def __contains__(self, channel: object) -> bool:
        return channel in self._callbacks

    async def run(self, channel: str, params: Mapping[str, Any], identity: ProcessIdentity) -> RawAnswer:
        """Run the handler of ``channel``; an exception becomes an error answer, never a crash of the listener."""
        callback = self._callbacks.get(channel)
        if callback is None:
            return RawAnswer(
                hostname=identity.hostname,
                pid=identity.pid,
                ok=False,
                error_type="LookupError",
                error_message=f"no handler subscribed to channel {channel!r} in this process",
            )
        try:
            result = callback(**params)
            if inspect.isawaitable(result):
                result = await result
            payload = to_jsonable_python(result)
        except Exception as error:
            _LOGGER.warning("The broadcast handler of channel %r raised", channel, exc_info=True)
            return RawAnswer(
                hostname=identity.hostname,
                pid=identity.pid,
                ok=False,
                error_type=type(error).__name__,
                error_message=str(error),
            )
        return RawAnswer(hostname=identity.hostname, pid=identity.pid, payload=payload)


class Confirmation:
    """Awaitable result of subscribe/unsubscribe: await it to wait for the backend's confirmation (bounded).

    The future resolves to True when the backend confirmed, False when the backend is not connected (the
    change is applied when it connects: the wait ends at once instead of lasting the timeout). It can also
    be dropped without awaiting: the object creates no coroutine until awaited, so nothing warns.
    """

    def __init__(self, future: asyncio.Future[bool] | None = None, timeout: float = 0.0, what: str = "") -> None:
        self._future = future
        self._timeout = timeout
        self._what = what

    def __await__(self) -> Generator[Any, None, None]:
        return self._wait().__await__()

    async def _wait(self) -> None:
        if self._future is None:
            return
        try:
            confirmed = await asyncio.wait_for(asyncio.shield(self._future), self._timeout)
        except TimeoutError:
            _LOGGER.warning("%s not confirmed within %.1fs; it is retried in the background", self._what, self._timeout)
            return
        if not confirmed:
            _LOGGER.info("%s is applied when the broadcast listener connects to Redis", self._what)


class Backend(Protocol):
    """What the public functions need from a backend."""

    name: str

    @property
    def connected(self) -> bool:
        """Whether broadcasts reach the other processes now (False for a backend that has none to reach)."""

    def is_usable(self) -> bool:
        """Whether this backend can serve the running event loop: ``startup`` keeps it instead of a new one."""

    def take_over(self, previous: Backend) -> None:
        """Called before ``previous`` (of any kind) is stopped and replaced by this backend, not started yet."""

    async def start(self) -> None:
        """Connect (bounded); must not raise when the transport is down: keep retrying in the background.

        Called at each ``startup``, also on a backend started already (that one returns at once).
        """

    async def stop(self) -> None:
        """Stop listening and cancel running handlers, without hanging."""

    def subscribe(self, channel: str) -> Confirmation:
        """Start receiving ``channel`` (already in the registry); the awaitable waits for confirmation."""

    def unsubscribe(self, channel: str) -> Confirmation:
        """Stop receiving ``channel`` (already removed from the registry)."""

    async def publish(
        self,
        channel: str,
        params: Mapping[str, Any],
        expect_answers: bool,
        timeout: float,  # noqa: ASYNC109 - the documented API takes a timeout
    ) -> list[RawAnswer | MissingAnswer | None] | None:
        """Send; with answers, one element per process (a MissingAnswer or None: no answer within ``timeout``)."""


ConnectedHook = Callable[[], Awaitable[None]]
"""Run after each (re)connection of a backend to its transport, e.g. to resynchronise state."""

BackendFactory = Callable[[Registry, ConnectedHook], Backend]
"""Builds a backend (not started) for the registry of the process and the hook to run after connections."""
