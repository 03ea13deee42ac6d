"""redis_utils._confirmed: a write is reported done only once the current master and its replicas hold it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest
import redis

from c2casgiutils import redis_utils
from tests.servers import RedisServer, free_port

pytestmark = pytest.mark.timeout(120)

PASSWORD = "confirmed-Secret-4711"


@pytest.fixture
async def clients_of(settings) -> AsyncIterator[object]:  # type: ignore[no-untyped-def]
    """Build the clients of a URL (closed after the test)."""
    built: list[redis_utils.RedisClients] = []

    def build(url: str) -> redis_utils.RedisClients:
        settings.redis.url = url
        clients = redis_utils.build()
        assert clients is not None
        built.append(clients)
        return clients

    yield build
    for clients in built:
        await clients.master.aclose()


@pytest.fixture
def replica_of(own_redis_server: RedisServer) -> Iterator[RedisServer]:
    """A second server, replica of ``own_redis_server``, online for the master (ROLE lists online replicas only)."""
    replica = RedisServer()
    replica.start()
    client = redis.Redis.from_url(replica.url)
    master = redis.Redis.from_url(own_redis_server.url)
    try:
        client.replicaof("127.0.0.1", str(own_redis_server.port))
        deadline = time.monotonic() + 20
        while master.info("replication").get("slave0", {}).get("state") != "online":
            assert time.monotonic() < deadline, "the replica is not online"
            time.sleep(0.05)
        yield replica
    finally:
        master.close()
        client.close()
        replica.close()


async def test_write_on_the_master_returns_its_reply(clients_of, redis_server: RedisServer) -> None:  # type: ignore[no-untyped-def]
    clients = clients_of(redis_server.url)
    key = f"test:confirmed:{uuid.uuid4().hex}"
    assert await redis_utils.confirmed_write(clients, "SET", key, "v") is True
    assert await clients.master.get(key) == b"v"
    assert await redis_utils.confirmed_write(clients, "DEL", key) == 1


async def test_write_returns_once_the_connected_replica_has_it(  # type: ignore[no-untyped-def]
    clients_of, own_redis_server: RedisServer, replica_of: RedisServer
) -> None:
    clients = clients_of(own_redis_server.url)
    key = f"test:confirmed:{uuid.uuid4().hex}"
    await redis_utils.confirmed_write(clients, "SET", key, "replicated")
    replica = redis.Redis.from_url(replica_of.url)
    try:
        assert replica.get(key) == b"replicated"  # WAIT made the write wait for it
    finally:
        replica.close()


async def test_write_on_a_replica_is_not_stored(  # type: ignore[no-untyped-def]
    settings, clients_of, own_redis_server: RedisServer, replica_of: RedisServer
) -> None:
    settings.redis.connect_timeout = timedelta(seconds=0.5)
    settings.redis.socket_timeout = timedelta(seconds=0.5)
    clients = clients_of(replica_of.url)  # a demoted master answers ROLE slave
    key = f"test:confirmed:{uuid.uuid4().hex}"
    started = time.monotonic()
    with pytest.raises(redis_utils.NotStoredError, match=r"not confirmed on the Redis master .* is a slave") as raised:
        await redis_utils.confirmed_write(clients, "SET", key, "lost", what="the test write")
    assert time.monotonic() - started < redis_utils.write_bound() + 2
    assert str(raised.value).startswith("the test write not confirmed")
    assert redis_utils.is_unavailable(raised.value)
    master = redis.Redis.from_url(own_redis_server.url)
    try:
        assert master.get(key) is None
    finally:
        master.close()


async def test_unreachable_server_fails_at_once_without_showing_the_password(settings, clients_of) -> None:  # type: ignore[no-untyped-def]
    clients = clients_of(f"redis://app:{PASSWORD}@127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    with pytest.raises(redis_utils.NotStoredError) as raised:
        await asyncio.wait_for(redis_utils.confirmed_write(clients, "SET", "k", "v", bound=30), 60)
    assert time.monotonic() - started < 10  # one server that refuses: no retry for the whole bound
    assert "(1 attempts; last: ConnectionError" in str(raised.value)
    assert PASSWORD not in str(raised.value)
    assert "redis://app:***@127.0.0.1" in str(raised.value)
