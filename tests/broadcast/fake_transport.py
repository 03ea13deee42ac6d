"""An in-memory pub/sub for the call protocol's tests: several "processes" in one event loop, no Redis.

The bus behaves as Redis does for the protocol: ``publish`` hands the frame to every endpoint subscribed to the
channel, later in the event loop (never within the call, like a message over the network), and returns how many
it reached; the presence table is a dict of :class:`Peer`. An endpoint can be disconnected, subscribe late, or be
expected (in the table) without listening, to play the failures the protocol handles.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable

from c2casgiutils.broadcast._calls import CallOptions, CallProtocol
from c2casgiutils.broadcast._presence import Peer
from c2casgiutils.broadcast._signing import ReplayGuard, Signer
from c2casgiutils.broadcast._tasks import BackgroundTasks
from c2casgiutils.broadcast.interface import Callback, ProcessIdentity, Registry
from c2casgiutils.broadcast.types import BroadcastUnavailableError

PREFIX = "test_"
_PIDS = itertools.count(1001)


class FakeBus:
    """The channels and the presence table every endpoint shares."""

    def __init__(self) -> None:
        self.endpoints: list[FakeEndpoint] = []
        self.presence: dict[str, Peer] = {}
        self.published: list[tuple[str, bytes]] = []


class FakeEndpoint:
    """One process's transport and roster on the bus."""

    where = "the fake bus"

    def __init__(self, bus: FakeBus) -> None:
        self._bus = bus
        self.channels: set[str] = set()
        self.connected = True
        self.receive: Callable[[bytes, bytes], None] = lambda channel, frame: None
        bus.endpoints.append(self)

    async def wait_connected(self, timeout: float) -> bool:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while not self.connected and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return self.connected

    async def publish(self, channel: str, frame: bytes) -> int:
        if not self.connected:
            raise BroadcastUnavailableError(f"broadcast on {channel!r} not sent: not connected to the fake bus")
        self._bus.published.append((channel, frame))
        reached = [endpoint for endpoint in self._bus.endpoints if endpoint.connected and channel in endpoint.channels]
        loop = asyncio.get_running_loop()
        for endpoint in reached:
            loop.call_soon(endpoint.receive, channel.encode(), frame)
        return len(reached)

    async def expected(self, channel: str) -> dict[str, Peer]:
        now = time.time()
        return {t: p for t, p in self._bus.presence.items() if channel in p.channels and p.expires > now}


class FakeProcess:
    """A registry, its call protocol and its endpoint: what the Redis backend assembles, on the fake bus."""

    def __init__(
        self,
        bus: FakeBus,
        handlers: dict[str, Callback] | None = None,
        *,
        secret: str | None = None,
        listening: bool = True,
        announced: bool = True,
        delivery_timeout: float = 1.0,
    ) -> None:
        self.bus = bus
        self.pid = next(_PIDS)
        self.identity = ProcessIdentity(hostname=f"host-{self.pid}", pid=self.pid)
        self.token = f"{self.identity.hostname}.{self.pid}.fake"
        self.registry = Registry()
        for channel, callback in (handlers or {}).items():
            self.registry.add(channel, callback)
        self.endpoint = FakeEndpoint(bus)
        self.tasks = BackgroundTasks()
        self.calls = CallProtocol(
            self.registry,
            identity=self.identity,
            token=self.token,
            transport=self.endpoint,
            roster=self.endpoint,
            signer=Signer(secret),
            replay_guard=ReplayGuard(signed=secret is not None, max_age=60),
            tasks=self.tasks,
            options=CallOptions(prefix=PREFIX, bound=0.5, delivery_timeout=delivery_timeout),
        )
        self.endpoint.receive = self.calls.receive
        self.endpoint.channels.add(self.calls.answer_channel)
        if listening:
            self.listen()
        if announced:
            self.announce()

    def listen(self) -> None:
        """Subscribe to the channels of the registry (a late listener calls it after the first publish)."""
        self.endpoint.channels.update(PREFIX + channel for channel in self.registry.channels())

    def announce(self) -> None:
        """Enter the presence table: the callers expect an answer from this process."""
        self.bus.presence[self.token] = Peer(
            self.token,
            self.identity.hostname,
            self.pid,
            frozenset(PREFIX + channel for channel in self.registry.channels()),
            time.time() + 60,
        )

    async def close(self) -> None:
        tasks = self.tasks.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
