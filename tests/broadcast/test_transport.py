"""broadcast/_transport.py: the listener's states against a real redis-server (and a real Sentinel set).

NEW -> CONNECTING -> CONNECTED; an outage -> RECONNECTING -> CONNECTED again; redis-py's own reconnection;
Redis down at start-up; after a Sentinel failover on the new master (MOVING there, or reconnected by redis-py
when Sentinel killed the old master's clients first); STOPPED.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
import redis

from c2casgiutils import redis_utils
from c2casgiutils.broadcast._tasks import BackgroundTasks
from c2casgiutils.broadcast._transport import ListenerState, RedisTransport, TransportOptions
from c2casgiutils.broadcast.types import BroadcastUnavailableError
from tests.sentinel_set import SentinelSet
from tests.servers import RedisServer, free_port

pytestmark = pytest.mark.timeout(120)
CHANNEL = "test_transport_chan"


@dataclass
class Listener:
    """A transport with what it reported."""

    transport: RedisTransport
    tasks: BackgroundTasks
    events: list[object] = field(default_factory=list)
    messages: list[tuple[bytes, bytes]] = field(default_factory=list)

    async def wait(self, condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"{what}: state {self.transport.state}, events {self.events}"
            await asyncio.sleep(0.02)


@pytest.fixture
async def listen(settings) -> AsyncIterator[Callable[[], Listener]]:  # type: ignore[no-untyped-def]
    """A transport on the configured Redis (short timeouts), stopped after the test."""
    made: list[tuple[Listener, redis_utils.RedisClients]] = []

    def make() -> Listener:
        clients = redis_utils.build()
        assert clients is not None
        tasks = BackgroundTasks()
        listener: Listener

        async def channels_changed() -> None:
            listener.events.append("channels")

        transport = RedisTransport(
            clients,
            tasks,
            TransportOptions(bound=1.5, idle=0.5, reconnect_delay_max=0.2, redis="the test Redis"),
            channels=lambda: {CHANNEL.encode()},
            on_message=lambda channel, frame: listener.messages.append((channel, frame)),
            on_connected=lambda reconnected: listener.events.append(reconnected),
            on_resubscribing=lambda: listener.events.append("resubscribing"),
            on_channels_change=channels_changed,
        )
        listener = Listener(transport, tasks)
        made.append((listener, clients))
        return listener

    yield make
    for listener, clients in made:
        tasks = listener.tasks.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        listener.transport.halt()
        await listener.transport.close()
        assert listener.transport.state is ListenerState.STOPPED
        await clients.master.aclose()


async def test_outage_and_recovery(
    settings,  # type: ignore[no-untyped-def]
    own_redis_server: RedisServer,
    listen: Callable[[], Listener],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings.redis.url = own_redis_server.url
    listener = listen()
    assert listener.transport.state is ListenerState.NEW
    await listener.transport.start()
    assert listener.transport.state is ListenerState.CONNECTED
    assert listener.events == [False]  # the first connection
    assert await listener.transport.publish(CHANNEL, b"frame") == 1
    await listener.wait(lambda: listener.messages == [(CHANNEL.encode(), b"frame")], "message")

    with caplog.at_level(logging.INFO, logger="c2casgiutils.broadcast"):
        own_redis_server.stop()
        await listener.wait(lambda: listener.transport.state is ListenerState.RECONNECTING, "outage seen")
        started = time.monotonic()
        await listener.transport.subscribe("test_transport_other", "other")  # applied on connection: no wait
        assert time.monotonic() - started < 0.5
        own_redis_server.start()
        await listener.wait(lambda: listener.transport.connected, "reconnected")
    assert listener.events[-1] is True  # a reconnection
    assert listener.transport.connections == 2
    assert caplog.text.count("lost Redis the test Redis") == 1
    assert "listening again on Redis the test Redis" in caplog.text


async def test_redis_py_own_reconnection_counts_as_one(
    settings,  # type: ignore[no-untyped-def]
    own_redis_server: RedisServer,
    listen: Callable[[], Listener],
) -> None:
    settings.redis.url = own_redis_server.url
    listener = listen()
    await listener.transport.start()
    client = redis.Redis.from_url(own_redis_server.url)
    try:
        assert client.execute_command("CLIENT", "KILL", "TYPE", "pubsub") == 1
    finally:
        client.close()
    await listener.wait(lambda: listener.events[-1:] == [True], "reconnection reported")
    assert listener.transport.reconnections == 1
    assert "resubscribing" in listener.events
    assert listener.transport.connected


async def test_redis_down_at_start_up(settings, listen: Callable[[], Listener]) -> None:  # type: ignore[no-untyped-def]
    settings.redis.url = f"redis://127.0.0.1:{free_port()}/0"
    listener = listen()
    started = time.monotonic()
    await listener.transport.start()
    assert time.monotonic() - started < 3
    assert listener.transport.state is ListenerState.RECONNECTING
    assert not await listener.transport.wait_connected(0.2)
    with pytest.raises(BroadcastUnavailableError, match="is unreachable"):
        await listener.transport.publish(CHANNEL, b"frame")


@pytest.mark.slow
async def test_follows_the_new_master_after_a_failover(
    settings,  # type: ignore[no-untyped-def]
    sentinel_set: SentinelSet,
    listen: Callable[[], Listener],
) -> None:
    settings.redis.url = None
    settings.redis.sentinels = sentinel_set.sentinel_addresses
    settings.redis.servicename = sentinel_set.service
    listener = listen()
    await listener.transport.start()
    assert listener.transport.connected
    old = sentinel_set.failover()
    sentinel_set.wait_master_change(old)
    states: set[ListenerState] = set()
    deadline = time.monotonic() + 30
    while ListenerState.MOVING not in states and listener.events[-1:] != [True]:  # moved, or reconnected
        assert time.monotonic() < deadline, f"the listener did not move: {listener.events}"
        await listener.transport.follow_master()  # what the backend's maintenance does every second
        states.add(listener.transport.state)
        await asyncio.sleep(0.1)
    await listener.wait(lambda: listener.transport.connected, "connected to the new master", timeout=30)
    assert await listener.transport.publish(CHANNEL, b"after") == 1  # published on the new master, received
