"""redis_utils._sentinel: the master and the replicas as a real Sentinel set reports them, also after a failover."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio
import redis.exceptions

from c2casgiutils import redis_utils
from tests.sentinel_set import SentinelSet
from tests.servers import RedisServer, free_port

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def sentinel_clients(settings, sentinel_set: SentinelSet) -> AsyncIterator[redis_utils.RedisClients]:  # type: ignore[no-untyped-def]
    settings.redis.url = None
    settings.redis.sentinels = sentinel_set.sentinel_addresses
    settings.redis.servicename = sentinel_set.service
    clients = redis_utils.build()
    assert clients is not None
    yield clients
    await clients.master.aclose()
    await clients.replica.aclose()


async def _connection_to(port: int) -> redis.asyncio.Redis:
    client = redis.asyncio.Redis(host="127.0.0.1", port=port, single_connection_client=True, socket_timeout=5)
    await client.ping()
    return client


async def test_master_and_replicas_as_the_sentinels_report_them(
    sentinel_clients: redis_utils.RedisClients, sentinel_set: SentinelSet
) -> None:
    master = sentinel_set.initial_master
    (replica,) = sentinel_set.replica_ports()
    assert await redis_utils.master_address(sentinel_clients) == f"127.0.0.1:{master}"
    assert await redis_utils.replica_addresses(sentinel_clients) == [f"127.0.0.1:{replica}"]
    assert await redis_utils.known_replicas(sentinel_clients) == [("127.0.0.1", replica)]

    on_master = await _connection_to(master)
    on_replica = await _connection_to(replica)
    try:
        assert await redis_utils.master_mismatch(sentinel_clients, on_master.connection) is None
        reason = await redis_utils.master_mismatch(sentinel_clients, on_replica.connection)
        assert reason == (
            f"Sentinel reports the master at 127.0.0.1:{master}, the connection is on 127.0.0.1:{replica}"
        )
    finally:
        await on_master.aclose()
        await on_replica.aclose()


@pytest.mark.slow
async def test_after_a_failover_the_lookups_and_the_master_client_follow(
    sentinel_clients: redis_utils.RedisClients, sentinel_set: SentinelSet
) -> None:
    old = sentinel_set.initial_master
    assert await sentinel_clients.master.set("before", "1")  # an idle connection to the old master in the pool
    on_old = await _connection_to(old)
    try:
        sentinel_set.failover()
        new = sentinel_set.wait_master_change(old)
        sentinel_set.wait_healthy()
        assert await redis_utils.master_address(sentinel_clients) == f"127.0.0.1:{new}"
        reason = await redis_utils.master_mismatch(sentinel_clients, on_old.connection)
        assert reason is not None
        assert f"the connection is on 127.0.0.1:{old}" in reason
        assert await redis_utils.known_replicas(sentinel_clients) == [("127.0.0.1", old)]
    finally:
        await on_old.aclose()
    # The master client writes to the new master (its pool dropped its idle connection to the old one).
    assert await sentinel_clients.master.set("after", "1")
    assert sentinel_set.role(new) == "master"
    client = sentinel_set.client(new)
    try:
        assert client.get("after") == b"1"
    finally:
        client.close()


async def test_without_sentinel_the_one_server_is_the_master(settings, redis_server: RedisServer) -> None:  # type: ignore[no-untyped-def]
    settings.redis.url = redis_server.url
    clients = redis_utils.build()
    assert clients is not None
    try:
        assert await redis_utils.master_address(clients) == f"127.0.0.1:{redis_server.port}"
        assert await redis_utils.replica_addresses(clients) == []
        assert await redis_utils.known_replicas(clients) is None
        assert await redis_utils.master_mismatch(clients, None) is None
    finally:
        await clients.master.aclose()
    settings.redis.url = "unix:///run/redis/redis.sock?db=1"  # no I/O: read from the client's settings
    clients = redis_utils.build()
    assert clients is not None
    assert await redis_utils.master_address(clients) == "unix:/run/redis/redis.sock"


async def test_no_sentinel_answering_is_an_error_with_the_reasons(settings) -> None:  # type: ignore[no-untyped-def]
    settings.redis.url = None
    settings.redis.sentinels = f"127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    settings.redis.servicename = "nobody"
    clients = redis_utils.build()
    assert clients is not None
    with pytest.raises(redis.exceptions.ConnectionError, match="no Sentinel answered about 'nobody': .*; ") as raised:
        await redis_utils.replica_addresses(clients)
    assert str(raised.value).count("Error") >= 2  # one reason per Sentinel
    assert await redis_utils.known_replicas(clients) == []  # lenient: a confirmed write then counts the master's
    with pytest.raises(redis.exceptions.ConnectionError):
        await redis_utils.master_address(clients)


def test_addresses_are_formatted_for_ipv6_and_bytes() -> None:
    assert redis_utils.format_address(b"127.0.0.1", 6379) == "127.0.0.1:6379"
    assert redis_utils.format_address("::1", 26379) == "[::1]:26379"
    assert redis_utils.connection_address(None) == ("?", 0)
