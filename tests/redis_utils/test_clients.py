"""redis_utils._clients: clients from settings (URL or Sentinel), timeouts on every call, credentials masked."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta

import pytest
import redis.asyncio
import redis.exceptions

from c2casgiutils import config, redis_utils
from tests.redis_processes import Unreachable
from tests.servers import CuttingProxy

pytestmark = pytest.mark.timeout(60)


def test_not_configured_gives_no_client(settings) -> None:  # type: ignore[no-untyped-def]
    settings.redis.url = None
    settings.redis.sentinels = None
    assert not redis_utils.is_configured()
    assert redis_utils.get() is None
    assert redis_utils.build() is None
    assert redis_utils.describe() == "not configured"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:secret@host:6379/1", "redis://:***@host:6379/1"),
        ("rediss://user:p%40ss@[::1]:6380/0", "rediss://user:***@[::1]:6380/0"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert redis_utils.mask_url(url) == masked
    assert "secret" not in redis_utils.mask_url(url)


def test_url_client_is_described_without_its_password(settings) -> None:  # type: ignore[no-untyped-def]
    settings.redis.url = "redis://:pw@127.0.0.1:1/3"
    clients = redis_utils.build()
    assert clients is not None
    assert clients.master is clients.replica
    assert clients.sentinel is None
    assert redis_utils.describe() == "redis://:***@127.0.0.1:1/3"


async def test_url_client_uses_the_database_of_the_url(settings, redis_server) -> None:  # type: ignore[no-untyped-def]
    settings.redis.url = f"redis://127.0.0.1:{redis_server.port}/3"
    clients = redis_utils.build()
    assert clients is not None
    await clients.master.set("c2c-database-3", "here")
    direct = redis.asyncio.Redis(port=redis_server.port, db=3, socket_timeout=5)
    try:
        assert await direct.get("c2c-database-3") == b"here"
        assert await direct.delete("c2c-database-3") == 1
    finally:
        await direct.aclose()
        await clients.master.aclose()


def _clients(  # type: ignore[no-untyped-def]
    settings, port: int, retries: int, socket_timeout: float = 5, connect_timeout: float = 2
) -> redis_utils.RedisClients:
    """The clients of a URL to 127.0.0.1:``port``, with these retries and timeouts (seconds)."""
    settings.redis.url = f"redis://127.0.0.1:{port}/0"
    settings.redis.socket_timeout = timedelta(seconds=socket_timeout)
    settings.redis.connect_timeout = timedelta(seconds=connect_timeout)
    settings.redis.retries = retries
    clients = redis_utils.build()
    assert clients is not None
    return clients


@pytest.mark.parametrize("retries", [0, 2])
async def test_a_dropped_connection_is_retried_immediately_on_new_connections(  # type: ignore[no-untyped-def]
    settings, redis_server, retries: int
) -> None:
    """C2C__REDIS__RETRIES more attempts of the command, each on a new connection (redis-py's own: none)."""
    with CuttingProxy(redis_server.port, marker=b"c2c-cut-here") as proxy:
        clients = _clients(settings, proxy.port, retries)
        try:
            assert await clients.master.set("c2c-through-the-proxy", "1")
            assert proxy.connections == 1
            started = time.monotonic()
            with pytest.raises(redis.exceptions.ConnectionError):
                await clients.master.get("c2c-cut-here")
            assert time.monotonic() - started < 5  # immediate: no backoff between the attempts
            assert proxy.marked == 1 + retries
            assert proxy.connections == 1 + retries  # the first attempt on the pooled connection, then new ones
            assert await clients.master.get("c2c-through-the-proxy") == b"1"  # and the client works again
        finally:
            await clients.master.aclose()


async def test_an_unanswered_command_waits_the_socket_timeout_on_each_attempt(  # type: ignore[no-untyped-def]
    settings, redis_server
) -> None:
    with CuttingProxy(redis_server.port, marker=b"c2c-hold-here", hold=True) as proxy:
        # The connect timeout is not the one that applies to an answer.
        clients = _clients(settings, proxy.port, retries=1, socket_timeout=0.5, connect_timeout=8)
        try:
            with pytest.raises(redis.exceptions.TimeoutError):
                await asyncio.wait_for(clients.master.get("c2c-hold-here"), 60)
            assert proxy.marked == 2
            _wait_for(lambda: len(proxy.held) == 2)
            assert all(0.45 <= held < 6 for held in proxy.held), proxy.held
        finally:
            await clients.master.aclose()


async def test_an_unreachable_server_costs_the_connect_timeout_on_each_attempt(settings) -> None:  # type: ignore[no-untyped-def]
    unreachable = Unreachable()
    try:
        # The socket timeout is not the one that applies to a connection.
        clients = _clients(settings, unreachable.port, retries=2, socket_timeout=10, connect_timeout=0.4)
        started = time.monotonic()
        with pytest.raises((redis.exceptions.TimeoutError, redis.exceptions.ConnectionError)):
            await asyncio.wait_for(clients.master.ping(), 60)
        elapsed = time.monotonic() - started
        assert 3 * 0.4 * 0.9 <= elapsed < 10, elapsed  # three connection attempts, each bounded by 0.4 s
        await clients.master.aclose()
    finally:
        unreachable.close()


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_options_override_defaults(settings) -> None:  # type: ignore[no-untyped-def]
    settings.redis.url = "redis://127.0.0.1:1/0"
    settings.redis.options = config.parse_key_values("socket_timeout=7,health_check_interval=3")
    clients = redis_utils.build()
    assert clients is not None
    kwargs = clients.master.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == 7
    assert kwargs["health_check_interval"] == 3


def test_sentinel_gives_master_and_replica(settings) -> None:  # type: ignore[no-untyped-def]
    settings.redis.url = None
    settings.redis.sentinels = "127.0.0.1:26379,[::1]:26380"
    settings.redis.servicename = "mymaster"
    assert redis_utils.parse_sentinels(settings.redis.sentinels) == [("127.0.0.1", 26379), ("::1", 26380)]
    clients = redis_utils.build()
    assert clients is not None
    assert clients.sentinel is not None
    assert clients.master is not clients.replica
    assert "mymaster" in redis_utils.describe()


def test_sentinel_without_servicename_is_a_clear_startup_error(settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("C2C__REDIS__SENTINELS", "127.0.0.1:26379")
    with pytest.raises(config.SettingsError, match="C2C__REDIS__SERVICENAME"):
        config.load_settings()
    settings.redis.sentinels = "127.0.0.1:26379"  # bypasses validation: build() checks again
    settings.redis.servicename = None
    with pytest.raises(config.SettingsError, match="SERVICENAME"):
        redis_utils.build()


async def test_clients_cached_per_loop_and_cleaned_up(settings, redis_server) -> None:  # type: ignore[no-untyped-def]
    settings.redis.url = redis_server.url
    first = redis_utils.get()
    assert first is not None
    assert redis_utils.get() is first
    assert await first.master.ping()
    await redis_utils.cleanup()
    second = redis_utils.get()
    assert second is not None
    assert second is not first
    assert await second.master.ping()
    await redis_utils.cleanup()


async def test_black_hole_call_is_bounded(settings, black_hole) -> None:  # type: ignore[no-untyped-def]
    settings.redis.url = f"redis://127.0.0.1:{black_hole.port}/0"
    settings.redis.socket_timeout = timedelta(seconds=0.3)
    settings.redis.connect_timeout = timedelta(seconds=0.3)
    clients = redis_utils.build()
    assert clients is not None
    started = time.monotonic()
    with pytest.raises((redis.exceptions.TimeoutError, redis.exceptions.ConnectionError)):
        await clients.master.ping()
    assert time.monotonic() - started < 5
    await clients.master.aclose()


async def test_stopped_redis_fails_fast_then_recovers(settings, own_redis_server) -> None:  # type: ignore[no-untyped-def]
    settings.redis.url = own_redis_server.url
    clients = redis_utils.build()
    assert clients is not None
    assert await clients.master.set("k", "v")
    own_redis_server.stop()
    started = time.monotonic()
    with pytest.raises(redis.exceptions.ConnectionError):
        await clients.master.get("k")
    assert time.monotonic() - started < 3  # no multi-second backoff
    own_redis_server.start()
    assert await clients.master.ping()  # the stale pooled connection is replaced by the retry
    await clients.master.aclose()


def test_sentinel_database_and_tls_options(settings) -> None:  # type: ignore[no-untyped-def]
    import redis.asyncio.sentinel

    settings.redis.url = None
    settings.redis.sentinels = "127.0.0.1:26379"
    settings.redis.servicename = "mymaster"
    settings.redis.db = 4
    settings.redis.options = {"ssl": True, "ssl_ca_certs": "/ca.pem"}
    clients = redis_utils.build()
    assert clients is not None
    pool = clients.master.connection_pool
    assert pool.connection_kwargs["db"] == 4
    assert issubclass(pool.connection_class, redis.asyncio.sentinel.SentinelManagedSSLConnection)
    settings.redis.options = {"db": 2}
    with pytest.raises(config.SettingsError, match="db in C2C__REDIS__OPTIONS names 2, C2C__REDIS__DB names 4"):
        redis_utils.build()
    settings.redis.options = {"ssl_certfile": "/client.pem"}
    with pytest.raises(config.SettingsError, match="add ssl=True to C2C__REDIS__OPTIONS"):
        redis_utils.build()
    settings.redis.options = {}
    settings.redis.sentinel_options = {"pasword": "typo"}
    with pytest.raises(config.SettingsError, match="C2C__REDIS__SENTINEL_OPTIONS: .*'pasword'"):
        redis_utils.build()


def test_build_outside_an_event_loop_checks_options_without_io(settings) -> None:  # type: ignore[no-untyped-def]
    settings.redis.url = "redis://127.0.0.1:1/0"  # nothing listens: no connection is attempted by the checks
    settings.redis.options = {"health_check_interval": 3}
    clients = redis_utils.build()
    assert clients is not None
    assert clients.master.connection_pool.connection_kwargs["health_check_interval"] == 3
