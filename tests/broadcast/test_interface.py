"""broadcast/interface.py: a backend written here, against the interface only, serves the public functions.

``startup`` chooses the backend by name through the interface (no knowledge of the classes): a custom backend
registered under the name the settings choose is built, started, asked whether it is connected, given the
subscriptions, and stopped by ``shutdown``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from c2casgiutils import broadcast
from c2casgiutils.broadcast.interface import (
    Backend,
    Confirmation,
    ConnectedHook,
    ProcessIdentity,
    RawAnswer,
    Registry,
)
from c2casgiutils.broadcast.types import MissingAnswer


class RecordingBackend:
    """Calls the handlers of this process and records what the public functions asked of it."""

    name = "memory"

    def __init__(self, registry: Registry, on_connected: ConnectedHook | None = None) -> None:
        self.registry = registry
        self.on_connected = on_connected
        self.calls: list[str] = []
        self.connected = False

    def is_usable(self) -> bool:
        return True

    def take_over(self, previous: Backend) -> None:
        self.calls.append(f"take_over {previous.name}")

    async def start(self) -> None:
        self.calls.append("start")
        self.connected = True
        if self.on_connected is not None:
            await self.on_connected()

    async def stop(self) -> None:
        self.calls.append("stop")
        self.connected = False

    def subscribe(self, channel: str) -> Confirmation:
        self.calls.append(f"subscribe {channel}")
        return Confirmation()

    def unsubscribe(self, channel: str) -> Confirmation:
        self.calls.append(f"unsubscribe {channel}")
        return Confirmation()

    async def publish(
        self,
        channel: str,
        params: Mapping[str, Any],
        expect_answers: bool,
        timeout: float,  # noqa: ASYNC109
    ) -> list[RawAnswer | MissingAnswer | None] | None:
        self.calls.append(f"publish {channel}")
        answer = await self.registry.run(channel, params, ProcessIdentity(hostname="recorded", pid=1))
        return [answer] if expect_answers else None


async def test_a_backend_plugged_in_through_the_interface(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[RecordingBackend] = []

    def factory(registry: Registry, on_connected: ConnectedHook) -> Backend:
        backend = RecordingBackend(registry, on_connected)
        built.append(backend)
        return backend

    hooks: list[str] = []

    async def hook() -> None:
        hooks.append("connected")

    broadcast.on_connected(hook)
    monkeypatch.setitem(broadcast._BACKENDS, "memory", factory)
    monkeypatch.setattr(broadcast, "_configured_backend", lambda: "memory")  # what the settings would choose
    await broadcast.shutdown()
    try:
        await broadcast.startup()
        (backend,) = built
        assert broadcast.backend_name() == "memory"
        assert broadcast.is_connected()
        assert hooks == ["connected"]
        await broadcast.startup()  # usable: kept, started again (a real backend returns at once)
        assert built == [backend]

        await broadcast.subscribe("interface_chan", lambda value: value * 2)
        answers = await broadcast.broadcast("interface_chan", {"value": 21}, expect_answers=True)
        assert answers is not None
        assert [(a.hostname, a.payload) for a in answers if isinstance(a, broadcast.BroadcastResponse)] == [
            ("recorded", 42)
        ]
        broadcast.unsubscribe("interface_chan")
        await broadcast.shutdown()
        assert broadcast.backend_name() == "local"
        assert backend.calls == [
            "take_over local",
            "start",
            "start",
            "subscribe interface_chan",
            "publish interface_chan",
            "unsubscribe interface_chan",
            "stop",
        ]
    finally:
        broadcast._STATE.hooks.remove(hook)
