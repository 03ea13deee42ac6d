"""Broadcast between real OS processes: uvicorn --workers 3 of tests/broadcast_apps and this test process."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import redis

from c2casgiutils import broadcast, redis_utils
from c2casgiutils.broadcast import MissingAnswer
from c2casgiutils.broadcast import types as broadcast_types
from tests.broadcast_fixtures import BROADCAST_SECRET, Workers, running_workers, wait_subscribers

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
ECHO = "test_echo"


@pytest.fixture(scope="module")
def workers(redis_server) -> Iterator[Workers]:  # type: ignore[no-untyped-def]
    with running_workers(redis_server.url) as service:
        yield service


@pytest.fixture
async def caller(settings, redis_server) -> AsyncIterator[None]:  # type: ignore[no-untyped-def]
    """This test process as a broadcasting client (it subscribes to nothing, so it is not counted)."""
    settings.redis.url = redis_server.url
    settings.broadcast.secret = BROADCAST_SECRET
    await broadcast.startup()
    assert broadcast.is_connected()
    yield
    await broadcast.shutdown()
    await redis_utils.cleanup()


async def restart_with_secret(settings, secret: str | None) -> None:  # type: ignore[no-untyped-def]
    """Sign this process's broadcasts with ``secret`` from now on."""
    await broadcast.shutdown()
    settings.broadcast.secret = secret
    await broadcast.startup()
    assert broadcast.is_connected()


def pids_of(answers: list[broadcast_types.BroadcastResponse | MissingAnswer]) -> set[int]:
    return {a.pid for a in answers if isinstance(a, broadcast_types.BroadcastResponse)}


async def test_one_answer_from_each_process(workers: Workers, caller: None) -> None:
    answers = await broadcast.broadcast(ECHO, {"message": "hello"}, expect_answers=True, timeout=10)
    assert answers is not None
    assert len(answers) == 3
    assert all(isinstance(a, broadcast_types.BroadcastResponse) for a in answers)
    assert len(pids_of(answers)) == 3
    assert os.getpid() not in pids_of(answers)
    for answer in answers:
        assert isinstance(answer, broadcast_types.BroadcastResponse)
        assert answer.payload == {"message": "Broadcast echo: hello", "pid": answer.pid}


async def test_typed_answers_through_a_worker(workers: Workers) -> None:
    async with httpx.AsyncClient(base_url=workers.url, timeout=15) as client:
        serving = (await client.get("/pid")).json()["pid"]
        answers = (await client.get("/echo", params={"message": "typed"})).json()
    assert [a["kind"] for a in answers] == ["response"] * 3
    assert serving in {a["pid"] for a in answers}
    assert {a["payload"]["message"] for a in answers} == {"Broadcast echo: typed"}


async def test_handler_error_is_an_error_answer_from_that_process(workers: Workers, caller: None) -> None:
    answers = await broadcast.broadcast(ECHO, {"message": "x"}, expect_answers=True, timeout=10)
    assert answers is not None
    victim = sorted(pids_of(answers))[0]
    answers = await broadcast.broadcast(ECHO, {"message": "x", "fail_pid": victim}, expect_answers=True, timeout=10)
    assert answers is not None
    errors = [a for a in answers if isinstance(a, broadcast.ErrorAnswer)]
    assert len(errors) == 1
    assert errors[0].pid == victim
    assert errors[0].error_type == "RuntimeError"
    assert f"failure requested in process {victim}" in errors[0].message
    assert len(pids_of(answers)) == 2


@pytest.mark.parametrize("secret", [None, "a-wrong-secret"])
async def test_unsigned_or_wrongly_signed_message_is_ignored(
    workers: Workers,
    caller: None,
    settings,
    secret: str | None,  # type: ignore[no-untyped-def]
) -> None:
    await restart_with_secret(settings, secret)  # the backend reads the secret when it is built
    answers = await broadcast.broadcast(ECHO, {"message": "forged"}, expect_answers=True, timeout=1.5)
    # Redis delivered the message to the 3 workers (PUBLISH counted them) but none ran the handler.
    assert answers is not None
    assert len(answers) == 3
    assert all(type(a) is MissingAnswer and a.status == "timeout" for a in answers)
    expected = "unsigned message" if secret is None else "wrong signature"
    deadline = time.monotonic() + 10
    while workers.output().count(expected) < 3 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert workers.output().count(expected) >= 3
    await restart_with_secret(settings, BROADCAST_SECRET)
    answers = await broadcast.broadcast(ECHO, {"message": "signed"}, expect_answers=True, timeout=10)
    assert answers is not None
    assert len(pids_of(answers)) == 3


async def test_raw_unsigned_publish_is_ignored(workers: Workers, redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis.Redis.from_url(redis_server.url, socket_timeout=2)
    try:
        frame = b'- {"id": "x1", "ts": 0, "params": {"message": "raw"}, "reply": null}'
        assert client.publish("broadcast_api_" + ECHO, frame) == 3
    finally:
        client.close()
    deadline = time.monotonic() + 10
    while workers.output().count("unsigned message") < 3 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert "raw" not in workers.output()


async def test_killed_process_is_a_missing_answer_within_the_timeout(
    workers: Workers,
    caller: None,
    redis_server,  # type: ignore[no-untyped-def]
) -> None:
    answers = await broadcast.broadcast(ECHO, {"message": "before"}, expect_answers=True, timeout=10)
    assert answers is not None
    before = pids_of(answers)
    victim = sorted(before)[-1]
    timeout = 4.0
    started = time.monotonic()
    call = asyncio.create_task(
        broadcast.broadcast(ECHO, {"message": "kill", "hang_pid": victim}, expect_answers=True, timeout=timeout)
    )
    client = redis.asyncio.Redis.from_url(redis_server.url, socket_timeout=2)
    try:
        while not await client.exists(f"test:hanging:{victim}"):
            assert time.monotonic() - started < timeout, "the victim never received the message"
            await asyncio.sleep(0.02)
    finally:
        await client.aclose()
    os.kill(victim, signal.SIGKILL)
    answers = await call
    elapsed = time.monotonic() - started
    assert answers is not None
    assert len(answers) == 3
    missing = [a for a in answers if isinstance(a, MissingAnswer)]
    assert len(missing) == 1
    assert missing[0].status == "timeout"
    assert pids_of(answers) == before - {victim}
    assert elapsed < timeout + 2  # bounded by the timeout, not by the dead process

    # uvicorn replaces the dead worker; the new one subscribes and answers. The dead one is still in the
    # presence table until its entry expires: it is reported missing (with its pid), never silently dropped.
    await asyncio.to_thread(wait_subscribers, redis_server.url, ECHO, 3)
    answers = await broadcast.broadcast(ECHO, {"message": "after"}, expect_answers=True, timeout=3)
    assert answers is not None
    after = pids_of(answers)
    assert len(after) == 3
    assert victim not in after
    assert all(a.pid == victim for a in answers if isinstance(a, MissingAnswer))


async def test_redis_restart_mid_test(own_redis_server, settings) -> None:  # type: ignore[no-untyped-def]
    settings.redis.url = own_redis_server.url
    settings.broadcast.secret = BROADCAST_SECRET
    with running_workers(own_redis_server.url) as service:
        await broadcast.startup()
        try:
            answers = await broadcast.broadcast(ECHO, {"message": "up"}, expect_answers=True, timeout=10)
            assert answers is not None
            assert len(pids_of(answers)) == 3

            await asyncio.to_thread(own_redis_server.stop)
            started = time.monotonic()
            with pytest.raises(broadcast.BroadcastUnavailableError, match="unreachable|not connected"):
                await broadcast.broadcast(ECHO, {"message": "down"})
            with pytest.raises(broadcast.BroadcastUnavailableError):
                await broadcast.broadcast(ECHO, {"message": "down"}, expect_answers=True, timeout=30)
            assert time.monotonic() - started < 10  # fails fast, does not wait for the 30s timeout
            async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:
                assert (await client.get("/pid")).status_code == 200  # the service keeps serving

            await asyncio.to_thread(own_redis_server.start)
            deadline = time.monotonic() + 20
            while True:
                try:
                    answers = await broadcast.broadcast(ECHO, {"message": "back"}, expect_answers=True, timeout=5)
                except broadcast.BroadcastUnavailableError:
                    answers = None
                if answers is not None and len(pids_of(answers)) == 3:
                    break
                assert time.monotonic() < deadline, f"not every process answered after the restart: {answers}"
                await asyncio.sleep(0.2)
            assert "lost Redis" in service.output()
        finally:
            await broadcast.shutdown()
            await redis_utils.cleanup()
