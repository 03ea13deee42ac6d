"""In-process backend: used when no Redis is configured; this process is the only receiver."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from c2casgiutils.broadcast.interface import Confirmation, ProcessIdentity, RawAnswer, Registry
from c2casgiutils.broadcast.types import MissingAnswer


class LocalBackend:
    """Calls the handler of this process directly (awaited, so a change is applied when the call returns)."""

    name = "local"

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._identity = ProcessIdentity()

    async def start(self) -> None:
        self._identity = ProcessIdentity()

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
