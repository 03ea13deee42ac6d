"""log_levels: the service behind the logging routes, called directly (this process, every process, storage)."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import AsyncIterator

import pytest
import redis

from c2casgiutils import broadcast, log_levels, redis_utils
from tests.servers import RedisServer

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
async def local_broadcast(settings) -> AsyncIterator[None]:  # type: ignore[no-untyped-def]
    settings.redis.url = None
    settings.broadcast.secret = None
    await broadcast.shutdown()
    yield
    await broadcast.shutdown()
    await redis_utils.cleanup()


def unique_logger() -> str:
    return f"tests.log_levels.{uuid.uuid4().hex[:8]}"


def test_names_and_levels_are_checked() -> None:
    assert log_levels.check_logger_name("  app.db ") == "app.db"
    assert log_levels.check_level(" debug") == "DEBUG"
    for bad_name in ("", "   ", "a\nb"):
        with pytest.raises(ValueError, match="non-empty printable"):
            log_levels.check_logger_name(bad_name)
    with pytest.raises(ValueError, match="accepted levels are CRITICAL, ERROR, WARNING, INFO, DEBUG, NOTSET"):
        log_levels.check_level("LOUD")


def test_an_override_is_removed_back_to_the_level_from_before() -> None:
    name = unique_logger()
    logging.getLogger(name).setLevel(logging.WARNING)
    assert log_levels.apply_override(name, "DEBUG").level == "DEBUG"
    assert log_levels.apply_override(name, "ERROR").level == "ERROR"  # a second override keeps the first original
    assert log_levels.apply_override(name, None).level == "WARNING"
    assert log_levels.apply_override(name, None).level == "WARNING"  # nothing to remove: unchanged
    with pytest.raises(ValueError, match="invalid level 'debug'"):
        log_levels.apply_override(name, "debug")  # the handler takes checked levels only
    assert logging.getLogger(name).level == logging.WARNING
    assert log_levels.level_of("root").name == "root"


async def test_memory_store_without_redis_and_apply_everywhere_in_this_process() -> None:
    store = log_levels.OverrideStore.from_settings()
    assert store.clients is None
    name = unique_logger()
    await store.store(name, "INFO")
    assert (await store.stored())[name] == "INFO"
    answers = await log_levels.apply_everywhere(name, "INFO")
    assert [(a.pid, a.payload.level) for a in answers if isinstance(a, broadcast.BroadcastResponse)] == [
        (os.getpid(), "INFO")
    ]
    await store.store(name, None)
    assert name not in await store.stored()


async def test_redis_store_reads_only_its_prefix_and_skips_invalid_values(
    settings,  # type: ignore[no-untyped-def]
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings.redis.url = redis_server.url
    prefix = f"test_{uuid.uuid4().hex[:6]}_[*]_"  # glob characters are matched literally
    store = log_levels.OverrideStore(redis_utils.get(), prefix)
    name, invalid = unique_logger(), unique_logger()
    await store.store(name, "ERROR")
    sync = redis.Redis.from_url(redis_server.url)
    try:
        assert sync.get(prefix + name) == b"ERROR"
        sync.set(prefix + invalid, "LOUD")
        sync.set(prefix.replace("[*]", "x") + unique_logger(), "DEBUG")  # matched by the prefix as a glob
        with caplog.at_level(logging.WARNING, logger="c2casgiutils.log_levels"):
            assert await store.stored() == {name: "ERROR"}
        assert f"Ignored the invalid logging override {invalid!r}='LOUD'" in caplog.text
        await store.store(name, None)
        assert sync.get(prefix + name) is None
    finally:
        sync.delete(prefix + invalid)
        sync.close()


async def test_restore_applies_stored_overrides_and_puts_back_removed_ones() -> None:
    stored, removed = unique_logger(), unique_logger()
    logging.getLogger(removed).setLevel(logging.WARNING)
    log_levels.apply_override(removed, "DEBUG")  # applied here, then removed by another process meanwhile
    store = log_levels.OverrideStore(None, "unused_")
    await store.store(stored, "CRITICAL")
    try:
        await log_levels.restore_overrides(store)
        assert logging.getLogger(stored).level == logging.CRITICAL
        assert logging.getLogger(removed).level == logging.WARNING
    finally:
        await store.store(stored, None)
        log_levels.apply_override(stored, None)


async def test_a_key_that_is_not_utf8_is_listed_not_fatal(settings, redis_server: RedisServer) -> None:  # type: ignore[no-untyped-def]
    settings.redis.url = redis_server.url
    prefix = f"test_{uuid.uuid4().hex[:6]}_"
    store = log_levels.OverrideStore(redis_utils.get(), prefix)
    sync = redis.Redis.from_url(redis_server.url)
    try:
        sync.set(prefix.encode() + b"bad\xff", "INFO")
        assert await store.stored() == {"bad\ufffd": "INFO"}
    finally:
        sync.delete(prefix.encode() + b"bad\xff")
        sync.close()
