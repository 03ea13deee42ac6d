"""broadcast/redis.py in one process, with a real redis-server: subscriptions confirmed, signatures and replays,
outages, shutdown, event loops, presence (the tests between processes are in test_processes.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import timedelta

import pytest
import redis

from c2casgiutils import broadcast, redis_utils
from c2casgiutils.broadcast import MissingAnswer, _signing
from c2casgiutils.broadcast import types as broadcast_types
from tests.broadcast_apps.models import Echo, Point, echo_points
from tests.broadcast_fixtures import use_redis

pytestmark = pytest.mark.timeout(60)


# ---------------------------------------------------------------------------------------------- Redis backend


async def test_switching_to_redis_keeps_subscriptions(settings, redis_server) -> None:  # type: ignore[no-untyped-def]
    echo = await broadcast.decorate(echo_points, expect_answers=True)
    broadcast.subscribe("kept_chan", lambda: "kept")
    await use_redis(settings, redis_server.url)
    assert broadcast.backend_name() == "redis"
    assert broadcast.is_connected()
    client = redis.Redis.from_url(redis_server.url)
    try:
        counts = dict(client.pubsub_numsub("broadcast_api_kept_chan"))
    finally:
        client.close()
    assert counts[b"broadcast_api_kept_chan"] == 1
    answers = await broadcast.broadcast("kept_chan", expect_answers=True, timeout=5)
    assert answers is not None
    assert [a.payload for a in answers if isinstance(a, broadcast_types.BroadcastResponse)] == ["kept"]
    typed = await echo(Point(x=2, y=0), scale=2)
    assert typed is not None
    assert isinstance(typed[0], broadcast_types.BroadcastResponse)
    assert typed[0].payload == Echo(points=[Point(x=4, y=0)], total=4)


async def test_redis_subscribe_and_unsubscribe_are_confirmed(settings, redis_server) -> None:  # type: ignore[no-untyped-def]
    await use_redis(settings, redis_server.url)
    client = redis.Redis.from_url(redis_server.url)

    def count() -> int:
        return int(dict(client.pubsub_numsub("broadcast_api_confirmed"))[b"broadcast_api_confirmed"])

    try:
        await broadcast.subscribe("confirmed", lambda: 1)
        assert count() == 1
        await broadcast.unsubscribe("confirmed")
        deadline = time.monotonic() + 5
        while count() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert count() == 0
        assert await broadcast.broadcast("confirmed", expect_answers=True, timeout=1) == []
    finally:
        client.close()


async def test_returns_as_soon_as_every_receiver_answered(settings, redis_server) -> None:  # type: ignore[no-untyped-def]
    await use_redis(settings, redis_server.url)
    await broadcast.subscribe("fast", lambda: "ok")
    started = time.monotonic()
    answers = await broadcast.broadcast("fast", expect_answers=True, timeout=30)
    assert answers is not None
    assert len(answers) == 1
    assert time.monotonic() - started < 10  # far below the timeout: no waiting for it


async def test_wrong_signature_stale_and_replayed_messages_are_ignored(
    settings,
    redis_server,
    caplog,  # type: ignore[no-untyped-def]
) -> None:
    await use_redis(settings, redis_server.url, secret="the-secret")
    calls: list[str] = []
    await broadcast.subscribe("guarded", lambda tag: calls.append(tag))
    channel = "broadcast_api_guarded"

    def frame(tag: str, ts: float, secret: str | None) -> bytes:
        body = json.dumps({"id": tag, "ts": ts, "params": {"tag": tag}, "reply": None}).encode()
        settings.broadcast.secret = secret
        try:
            return _signing.sign(channel, body)
        finally:
            settings.broadcast.secret = "the-secret"

    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        with caplog.at_level(logging.WARNING, logger="c2casgiutils.broadcast"):
            good = frame("good", time.time(), "the-secret")
            for data in (
                frame("unsigned", time.time(), None),
                frame("wrong", time.time(), "another-secret"),
                frame("stale", time.time() - 3600, "the-secret"),
                good,
                good,  # replay
                b"garbage",
            ):
                assert await client.publish(channel, data) == 1
            await broadcast.broadcast("guarded", {"tag": "last"}, expect_answers=True, timeout=5)
    finally:
        await client.aclose()
    assert calls == ["good", "last"]
    messages = "\n".join(record.getMessage() for record in caplog.records)
    for reason in ("unsigned message", "wrong signature", "away from now", "replayed message", "malformed"):
        assert reason in messages


async def test_starts_when_redis_is_down_then_connects(settings, own_redis_server) -> None:  # type: ignore[no-untyped-def]
    own_redis_server.stop()
    hooks: list[str] = []

    async def hook() -> None:
        hooks.append("connected")

    broadcast.on_connected(hook)
    try:
        started = time.monotonic()
        await use_redis(settings, own_redis_server.url)
        assert time.monotonic() - started < 10
        assert broadcast.backend_name() == "redis"
        assert not broadcast.is_connected()
        with pytest.raises(broadcast.BroadcastUnavailableError, match="unreachable"):
            await broadcast.broadcast("late", {})
        broadcast.subscribe("late", lambda: "late answer")  # registered while disconnected

        own_redis_server.start()
        deadline = time.monotonic() + 15
        while not broadcast.is_connected():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        answers = await broadcast.broadcast("late", expect_answers=True, timeout=5)
        assert answers is not None
        assert [a.payload for a in answers if isinstance(a, broadcast_types.BroadcastResponse)] == ["late answer"]
        assert hooks == ["connected"]
    finally:
        broadcast._STATE.hooks.remove(hook)


async def test_black_hole_redis_is_bounded(settings, black_hole) -> None:  # type: ignore[no-untyped-def]
    settings.redis.connect_timeout = timedelta(seconds=0.5)
    settings.redis.socket_timeout = timedelta(seconds=0.5)
    started = time.monotonic()
    await use_redis(settings, f"redis://127.0.0.1:{black_hole.port}/0")
    assert not broadcast.is_connected()
    with pytest.raises(broadcast.BroadcastUnavailableError):
        await broadcast.broadcast("anything", {"a": 1})
    with pytest.raises(broadcast.BroadcastUnavailableError):
        await broadcast.broadcast("anything", {"a": 1}, expect_answers=True, timeout=60)
    await broadcast.shutdown()
    assert time.monotonic() - started < 15


async def test_shutdown_does_not_hang_on_a_running_handler(settings, redis_server) -> None:  # type: ignore[no-untyped-def]
    await use_redis(settings, redis_server.url)
    entered = asyncio.Event()

    async def forever() -> None:
        entered.set()
        await asyncio.sleep(3600)

    await broadcast.subscribe("forever", forever)
    waiting = asyncio.create_task(broadcast.broadcast("forever", expect_answers=True, timeout=3600))
    await asyncio.wait_for(entered.wait(), 5)
    await asyncio.wait_for(broadcast.shutdown(), 10)
    assert broadcast.backend_name() == "local"
    answers = await asyncio.wait_for(waiting, 5)  # the caller is released too
    assert answers is not None
    assert type(answers[0]) is MissingAnswer
    assert "forever" in broadcast._STATE.registry  # kept for the next startup


def test_startup_in_a_new_event_loop_replaces_the_backend_of_a_closed_one(settings, redis_server) -> None:  # type: ignore[no-untyped-def]
    settings.redis.url = redis_server.url
    broadcast.subscribe("across_loops", lambda: "answer")

    async def first() -> None:
        await broadcast.startup()
        assert broadcast.is_connected()
        # no shutdown: the loop closes with the backend running

    async def second() -> list[object] | None:
        await broadcast.startup()
        try:
            return await broadcast.broadcast("across_loops", expect_answers=True, timeout=5)  # type: ignore[return-value]
        finally:
            await broadcast.shutdown()
            await redis_utils.cleanup()

    asyncio.run(first())
    answers = asyncio.run(second())
    assert answers is not None
    assert len(answers) == 1  # the listener of the closed loop is not counted as a receiver
    assert isinstance(answers[0], broadcast_types.BroadcastResponse)
    assert answers[0].payload == "answer"


# ---------------------------------------------------------------------------------------------- presence


async def test_expected_process_that_does_not_answer_is_reported_with_its_pid(settings, redis_server) -> None:  # type: ignore[no-untyped-def]
    await use_redis(settings, redis_server.url)
    calls: list[int] = []
    await broadcast.subscribe("presence_chan", lambda: calls.append(1) or "here")
    ghost = {"hostname": "ghost-host", "pid": 999_999, "channels": ["broadcast_api_presence_chan"]}
    client = redis.Redis.from_url(redis_server.url)
    try:
        # A process that announced itself for the channel but is not subscribed now (still reconnecting, or
        # subscribed to the old master during a failover): the publish reaches fewer listeners than expected.
        client.hset("broadcast_api___presence__", "ghost", json.dumps({**ghost, "expires": time.time() + 60}))
        backend = broadcast._STATE.backend
        started = time.monotonic()
        answers = await broadcast.broadcast("presence_chan", expect_answers=True, timeout=1.5)
        elapsed = time.monotonic() - started
    finally:
        client.hdel("broadcast_api___presence__", "ghost")
        client.close()
    assert answers is not None
    assert [a.payload for a in answers if isinstance(a, broadcast_types.BroadcastResponse)] == ["here"]
    missing = [a for a in answers if isinstance(a, MissingAnswer)]
    assert [(m.hostname, m.pid, m.status) for m in missing] == [("ghost-host", 999_999, "timeout")]
    assert getattr(backend, "republished", 0) >= 2  # published again while a listener was missing
    assert calls == [1]  # a repeated attempt does not run the handler twice
    assert elapsed < 10


async def test_expired_presence_entry_is_not_expected(settings, redis_server) -> None:  # type: ignore[no-untyped-def]
    await use_redis(settings, redis_server.url)
    await broadcast.subscribe("expired_chan", lambda: "here")
    client = redis.Redis.from_url(redis_server.url)
    gone = {"hostname": "gone", "pid": 1, "channels": ["broadcast_api_expired_chan"], "expires": time.time() - 1}
    try:
        client.hset("broadcast_api___presence__", "gone", json.dumps(gone))
        answers = await broadcast.broadcast("expired_chan", expect_answers=True, timeout=5)
    finally:
        client.hdel("broadcast_api___presence__", "gone")
        client.close()
    assert answers is not None
    assert len(answers) == 1
    assert isinstance(answers[0], broadcast_types.BroadcastResponse)
