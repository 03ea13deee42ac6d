"""The failed-attempt limiters (c2casgiutils/auth/_limiter): the process's own, the Redis one on a real
redis-server, and the fallback between them while Redis is stopped, black-holed and restarted."""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from c2casgiutils import config, redis_utils
from c2casgiutils.auth import _rate_limit
from c2casgiutils.auth._limiter import (
    FailureLimiter,
    FallbackFailureLimiter,
    LocalFailureLimiter,
    RedisFailureLimiter,
)
from tests.redis_processes import ACL_PASSWORD, ACL_USER, RedisProcess, TlsFiles, tls_acl_redis
from tests.sentinel_set import SentinelSet
from tests.servers import BlackHole, RedisServer

pytestmark = pytest.mark.timeout(120)

FALLBACK_METRIC = "c2casgiutils_test_fallback_total"


@pytest.fixture
async def redis_settings(settings: Any, redis_server: RedisServer) -> AsyncIterator[Any]:
    settings.redis.url = redis_server.url
    yield settings
    await redis_utils.cleanup()


def shared(max_failures: int = 5, window: float = 60.0, prefix: str | None = None) -> RedisFailureLimiter:
    return RedisFailureLimiter(
        max_failures,
        window,
        key_prefix=prefix or f"tests_limiter_{uuid.uuid4().hex[:8]}_",
        clients=redis_utils.get,
        timeout=5.0,
    )


def with_fallback(limiter: FailureLimiter, retry_shared_after: float = 0.2) -> FallbackFailureLimiter:
    return FallbackFailureLimiter(
        limiter,
        LocalFailureLimiter(limiter.max_failures, limiter.window),
        describe_error=redis_utils.safe_error,
        is_unavailable=redis_utils.is_unavailable,
        metric_name=FALLBACK_METRIC,
        retry_shared_after=retry_shared_after,
    )


async def burst(limiters: list[FailureLimiter], client: str, count: int) -> list[float | None]:
    """``count`` failures at once, spread over ``limiters`` (as over the processes of a fleet)."""
    return await asyncio.gather(*(limiters[index % len(limiters)].add_failure(client) for index in range(count)))


# ------------------------------------------------------------------------------------------------ the interface


@pytest.mark.parametrize("kind", ["local", "redis"])
async def test_the_window_slides_from_the_failures_themselves(kind: str, redis_settings: Any) -> None:
    limiter: FailureLimiter = LocalFailureLimiter(3, 0.6) if kind == "local" else shared(3, 0.6)
    assert await limiter.retry_after("10.0.0.1") is None
    assert await limiter.add_failure("10.0.0.1") is None
    await asyncio.sleep(0.3)
    assert await limiter.add_failure("10.0.0.1") is None
    assert await limiter.add_failure("10.0.0.1") is None
    wait = await limiter.retry_after("10.0.0.1")
    assert wait is not None
    assert 0 < wait <= 0.3  # the first failure leaves the window 0.6 s after it happened
    refused = await limiter.add_failure("10.0.0.1")
    assert refused is not None
    assert refused <= 0.3
    assert await limiter.retry_after("10.0.0.2") is None  # another client
    await asyncio.sleep(wait + 0.05)
    assert await limiter.retry_after("10.0.0.1") is None  # room for one: the other two are still counted
    assert await limiter.add_failure("10.0.0.1") is None
    assert await limiter.add_failure("10.0.0.1") is not None


@pytest.mark.parametrize("kind", ["local", "redis"])
async def test_a_burst_counts_exactly_the_limit(kind: str, redis_settings: Any) -> None:
    if kind == "local":
        limiters: list[FailureLimiter] = [LocalFailureLimiter(5, 60)]
    else:
        prefix = f"tests_burst_{uuid.uuid4().hex[:8]}_"
        limiters = [shared(5, 60, prefix) for _ in range(4)]  # four "processes" sharing one Redis
    answers = await burst(limiters, "10.0.0.3", 20)
    assert answers.count(None) == 5
    assert all(0 < wait <= 60 for wait in answers if wait is not None)


async def test_the_redis_limit_does_not_depend_on_the_clocks_of_the_processes(
    redis_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two "replicas" an hour apart share one count: the failures are stamped with Redis' own clock."""
    prefix = f"tests_clock_{uuid.uuid4().hex[:8]}_"
    limiter = shared(5, 60, prefix)
    real_time, real_monotonic = time.time, time.monotonic
    answers = []
    for index in range(20):
        skew = 3600 if index % 2 else -3600
        monkeypatch.setattr(time, "time", lambda skew=skew: real_time() + skew)
        monkeypatch.setattr(time, "monotonic", lambda skew=skew: real_monotonic() + skew)
        answers.append(await limiter.add_failure("10.0.0.4"))
    monkeypatch.undo()
    assert answers.count(None) == 5
    assert [wait is None for wait in answers] == [True] * 5 + [False] * 15
    assert all(wait is not None and 59 < wait <= 60 for wait in answers[5:])


async def test_services_with_other_prefixes_count_apart(redis_settings: Any) -> None:
    one, other = shared(2, 60), shared(2, 60)
    assert await burst([one], "10.0.0.5", 2) == [None, None]
    assert await one.retry_after("10.0.0.5") is not None
    assert await other.retry_after("10.0.0.5") is None


def test_a_window_must_be_longer_than_zero() -> None:
    with pytest.raises(config.SettingsError, match="C2C__AUTH__RATE_LIMIT__WINDOW"):
        config.load_settings(auth={"rate_limit": {"window": 0}})
    with pytest.raises(ValueError, match="positive window"):
        LocalFailureLimiter(5, 0)


# ------------------------------------------------------------------------------------------------ the fallback


def fallback_count() -> float:
    return REGISTRY.get_sample_value(FALLBACK_METRIC) or 0.0


async def test_redis_stopped_each_process_counts_on_its_own_then_shares_again(
    settings: Any, own_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    settings.redis.url = own_redis_server.url
    prefix = f"tests_outage_{uuid.uuid4().hex[:8]}_"
    processes = [with_fallback(shared(3, 60, prefix)) for _ in range(2)]
    try:
        assert await processes[0].add_failure("10.0.0.6") is None  # shared: seen by both
        assert await processes[1].add_failure("10.0.0.6") is None
        counted_before = fallback_count()
        own_redis_server.stop()
        with caplog.at_level(logging.INFO, logger="c2casgiutils.auth"):
            # Each process knows the failure it saw itself: 2 more each, then refused.
            for process in processes:
                answers = [await process.add_failure("10.0.0.6") for _ in range(4)]
                assert [wait is None for wait in answers] == [True, True, False, False]
                assert await process.retry_after("10.0.0.6") is not None
            assert all(process.in_fallback for process in processes)
            warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
            assert len(warnings) == 2  # one per process and outage, not one per attempt
            assert "unavailable" in warnings[0].getMessage()
            assert fallback_count() == counted_before + 10

            own_redis_server.start()
            await asyncio.sleep(0.3)  # past retry_shared_after
            # Shared again: Redis restarted empty, so 3 fresh failures between the two processes, then refused.
            answers = [await processes[index % 2].add_failure("10.0.0.7") for index in range(5)]
            assert [wait is None for wait in answers] == [True, True, True, False, False]
            assert not any(process.in_fallback for process in processes)
            back = [
                record
                for record in caplog.records
                if record.levelno == logging.INFO and "answers again" in record.getMessage()
            ]
            assert len(back) == 2
            assert len([record for record in caplog.records if record.levelno == logging.WARNING]) == 2
    finally:
        await redis_utils.cleanup()


async def test_a_black_holed_redis_costs_one_bounded_wait_per_retry_interval(settings: Any) -> None:
    hole = BlackHole()
    settings.redis.url = f"redis://127.0.0.1:{hole.port}/0"
    settings.redis.socket_timeout = timedelta(seconds=0.5)
    settings.redis.connect_timeout = timedelta(seconds=0.5)
    limiter = RedisFailureLimiter(5, 60, key_prefix="tests_hole_", clients=redis_utils.get, timeout=1.0)
    process = with_fallback(limiter, retry_shared_after=30)
    try:
        begin = time.monotonic()
        assert await process.add_failure("10.0.0.8") is None
        first = time.monotonic() - begin
        begin = time.monotonic()
        answers = [await process.add_failure("10.0.0.8") for _ in range(6)]
        others = time.monotonic() - begin
    finally:
        await redis_utils.cleanup()
        hole.close()
    assert first < 10  # the bound (1 s), generously
    assert others < first  # the next attempts do not wait for Redis again within the retry interval
    assert [wait is None for wait in answers] == [True] * 4 + [False] * 2


async def test_the_settings_choose_the_limiter(settings: Any, redis_server: RedisServer) -> None:
    settings.redis.url = None
    assert isinstance(_rate_limit.limiter(), LocalFailureLimiter)
    settings.redis.url = redis_server.url
    built = _rate_limit.limiter()
    assert isinstance(built, FallbackFailureLimiter)
    assert isinstance(built.shared, RedisFailureLimiter)
    assert built.shared.key_prefix == settings.auth.rate_limit.redis_prefix
    assert built.shared.timeout == 7.0  # connect (2 s) + socket (5 s) timeouts
    assert _rate_limit.limiter() is built  # kept while the settings do not change
    settings.auth.rate_limit.max_failures = 9
    assert _rate_limit.limiter().max_failures == 9
    _rate_limit.reset()


# ------------------------------------------------------------------------------------------------ our settings


async def four_processes_burst(client: str) -> tuple[str, list[float | None]]:
    """20 failures at once over four limiters sharing the configured Redis: (their key prefix, the answers)."""
    prefix = f"tests_settings_{uuid.uuid4().hex[:8]}_"
    try:
        return prefix, await burst([shared(5, 60, prefix) for _ in range(4)], client, 20)
    finally:
        await redis_utils.cleanup()


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[RedisProcess, TlsFiles]]:
    tls = TlsFiles(tmp_path)
    for server in tls_acl_redis("limiter-tls", tls):
        yield server, tls


async def test_over_tls_with_an_acl_user(settings: Any, tls_server: tuple[RedisProcess, TlsFiles]) -> None:
    """The limiter takes the layer's clients: TLS with our CA option and an ACL user work as for every Redis user."""
    server, tls = tls_server
    password = urllib.parse.quote(ACL_PASSWORD, safe="")
    settings.redis.url = f"rediss://{ACL_USER}:{password}@127.0.0.1:{server.port}/0"
    settings.redis.options = {"ssl_ca_certs": str(tls.ca)}
    _, answers = await four_processes_burst("10.0.1.1")
    assert answers.count(None) == 5


@pytest.mark.slow
async def test_through_sentinel(settings: Any, sentinel_set: SentinelSet) -> None:
    settings.redis.url = None
    settings.redis.sentinels = sentinel_set.sentinel_addresses
    settings.redis.servicename = sentinel_set.service
    prefix, answers = await four_processes_burst("10.0.1.2")
    assert answers.count(None) == 5
    master = sentinel_set.master_port()
    assert master is not None
    assert sentinel_set.client(master).zcard(f"{prefix}10.0.1.2") == 5  # on the master Sentinel names
