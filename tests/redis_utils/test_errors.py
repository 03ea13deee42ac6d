"""redis_utils._errors: which exceptions mean "Redis cannot be reached now", and which are bugs."""

from __future__ import annotations

import asyncio

import pytest
import redis.exceptions

from c2casgiutils import broadcast, redis_utils


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "Connection refused"),
        TimeoutError(),
        OSError("Network is unreachable"),
        redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:1"),
        redis.exceptions.TimeoutError("Timeout reading from socket"),
        redis.exceptions.ReadOnlyError("You can't write against a read only replica."),
        redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory"),
        redis.exceptions.ResponseError("NOAUTH Authentication required."),
        redis_utils.NotStoredError("write not confirmed"),
        broadcast.BroadcastUnavailableError("broadcast not sent"),
    ],
    ids=type,
)
def test_unavailable(error: BaseException) -> None:
    assert redis_utils.is_unavailable(error)


@pytest.mark.parametrize(
    "error",
    [ValueError("bad input"), KeyError("x"), RuntimeError("bug"), TypeError("bug"), asyncio.CancelledError()],
    ids=type,
)
def test_not_unavailable(error: BaseException) -> None:
    assert not redis_utils.is_unavailable(error)


def test_the_errors_of_the_layer_and_of_the_broadcast_share_one_base() -> None:
    assert issubclass(redis_utils.NotStoredError, redis_utils.RedisUnavailableError)
    assert issubclass(broadcast.BroadcastUnavailableError, redis_utils.RedisUnavailableError)
    assert issubclass(broadcast.BroadcastUnavailableError, broadcast.BroadcastError)
