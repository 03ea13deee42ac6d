"""Fixtures of the broadcast tests: each test starts on the local backend and leaves no subscription behind."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from c2casgiutils import broadcast, redis_utils


@pytest.fixture(autouse=True)
async def clean_broadcast(settings) -> AsyncIterator[None]:  # type: ignore[no-untyped-def]
    """Each test starts on the local backend and leaves no subscription behind."""
    settings.redis.url = None
    settings.broadcast.secret = None
    await broadcast.shutdown()
    before = set(broadcast._STATE.registry.channels())
    yield
    await broadcast.shutdown()
    await redis_utils.cleanup()
    for channel in set(broadcast._STATE.registry.channels()) - before:
        broadcast._STATE.registry.remove(channel)
