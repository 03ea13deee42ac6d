"""In-process backend: used when no Redis is configured; this process is the only receiver."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from c2casgiutils.broadcast.interface import Backend, Confirmation, ConnectedHook, ProcessIdentity, RawAnswer, Registry
from c2casgiutils.broadcast.types import MissingAnswer

_LOGGER = logging.getLogger("c2casgiutils.broadcast")


class LocalBackend:
    """Calls the handler of this process directly (awaited, so a change is applied when the call returns)."""

    name = "local"
    connected = False  # there is no other process to reach

    def __init__(self, registry: Registry, on_connected: ConnectedHook | None = None) -> None:
        del on_connected  # nothing to connect to
        self._registry = registry
        self._identity = ProcessIdentity()

    def is_usable(self) -> bool:
        return True  # no connection tied to an event loop

    def take_over(self, previous: Backend) -> None:
        del previous

    async def start(self) -> None:
        self._identity = ProcessIdentity()  # read again: a worker forked after the import has another pid
        _LOGGER.info("Broadcast: no Redis configured, broadcasts stay in this process")

    async def stop(self) -> None:
        return None

    def subscribe(self, channel: str) -> Confirmation:
        del channel
        return Confirmation()

    def unsubscribe(self, channel: str) -> Confirmation:
        del channel
        return Confirmation()

    async def publish(
        self,
        channel: str,
        params: Mapping[str, Any],
        expect_answers: bool,
        timeout: float,  # noqa: ASYNC109
    ) -> list[RawAnswer | MissingAnswer | None] | None:
        if channel not in self._registry:
            return [] if expect_answers else None
        try:
            answer: RawAnswer | None = await asyncio.wait_for(
                self._registry.run(channel, params, self._identity), timeout
            )
        except TimeoutError:
            answer = None
        return [answer] if expect_answers else None
