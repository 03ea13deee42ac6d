"""broadcast/_calls.py: the call protocol on an in-memory transport (fake_transport.py), without Redis.

Requests and answers matched by id, a handler run once per request whatever the attempts, republishing while
fewer listeners than expected received a request, the expected processes that did not answer reported with
their pid, signatures and replays, a transport that is not connected, and callers released at stop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable

import pytest

from c2casgiutils.broadcast import _signing
from c2casgiutils.broadcast.interface import RawAnswer
from c2casgiutils.broadcast.types import BroadcastUnavailableError, MissingAnswer
from tests.broadcast.fake_transport import PREFIX, FakeBus, FakeProcess

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def bus() -> FakeBus:
    return FakeBus()


@pytest.fixture
async def spawn(bus: FakeBus) -> AsyncIterator[Callable[..., FakeProcess]]:
    """Make processes on the bus (their background tasks are cancelled after the test)."""
    made: list[FakeProcess] = []

    def make(*args: object, **kwargs: object) -> FakeProcess:
        process = FakeProcess(bus, *args, **kwargs)  # type: ignore[arg-type]
        made.append(process)
        return process

    yield make
    for process in made:
        await process.close()


def _counting(calls: list[int], pid: int) -> Callable[..., int]:
    def handler(**params: object) -> int:
        del params
        calls.append(pid)
        return pid

    return handler


def _counting_listener(spawn: Callable[..., FakeProcess], calls: list[int]) -> FakeProcess:
    """A process listening to ``echo``, announced, whose handler records and answers its pid."""
    process = spawn(listening=False, announced=False)
    process.registry.add("echo", _counting(calls, process.pid))
    process.listen()
    process.announce()
    return process


def _answers(result: list[RawAnswer | MissingAnswer | None] | None) -> list[tuple[str, int, object]]:
    assert result is not None
    return sorted((a.hostname, a.pid, a.payload) for a in result if isinstance(a, RawAnswer))


async def test_every_listening_process_answers_once(spawn: Callable[..., FakeProcess]) -> None:
    calls: list[int] = []
    listeners = [_counting_listener(spawn, calls) for _ in range(3)]
    caller = spawn()
    started = time.monotonic()
    result = await caller.calls.publish("echo", {"message": "hi"}, expect_answers=True, timeout=10)
    assert time.monotonic() - started < 5  # returned when the last answer came, not at the timeout
    assert _answers(result) == sorted((p.identity.hostname, p.pid, p.pid) for p in listeners)
    assert sorted(calls) == sorted(p.pid for p in listeners)
    assert caller.calls.republished == 0


async def test_expected_process_that_never_listens_is_missing_with_its_pid(spawn: Callable[..., FakeProcess]) -> None:
    calls: list[int] = []
    live = _counting_listener(spawn, calls)
    ghost = spawn({"echo": _counting(calls, 0)}, listening=False)  # in the table, subscribed to nothing
    caller = spawn()
    result = await caller.calls.publish("echo", {}, expect_answers=True, timeout=1.0)
    assert _answers(result) == [(live.identity.hostname, live.pid, live.pid)]
    assert result is not None
    missing = [a for a in result if isinstance(a, MissingAnswer)]
    assert [(m.hostname, m.pid, m.status) for m in missing] == [(ghost.identity.hostname, ghost.pid, "timeout")]
    assert caller.calls.republished >= 2  # published again while a listener was missing
    assert calls == [live.pid]  # the repeated attempts did not run the handler twice


async def test_late_listener_gets_a_repeated_attempt(spawn: Callable[..., FakeProcess]) -> None:
    calls: list[int] = []
    early = _counting_listener(spawn, calls)
    late = spawn({"echo": _counting(calls, -1)}, listening=False)  # still reconnecting after a restart
    caller = spawn()
    asyncio.get_running_loop().call_later(0.15, late.listen)
    result = await caller.calls.publish("echo", {}, expect_answers=True, timeout=10)
    assert [pid for _, pid, _ in _answers(result)] == sorted([early.pid, late.pid])
    assert sorted(calls) == sorted([early.pid, -1])  # each handler ran once


async def test_receivers_not_in_the_table_are_counted_from_publish(spawn: Callable[..., FakeProcess]) -> None:
    async def hangs() -> None:
        await asyncio.sleep(3600)

    spawn({"echo": lambda: "here"})
    spawn({"echo": hangs}, announced=False)  # listens, never answers, unknown to the table
    caller = spawn()
    result = await caller.calls.publish("echo", {}, expect_answers=True, timeout=0.5)
    assert result is not None
    assert [a.payload for a in result if isinstance(a, RawAnswer)] == ["here"]
    assert [a for a in result if not isinstance(a, RawAnswer)] == [None]  # one receiver, no answer, no name


async def test_handler_error_is_an_error_answer(spawn: Callable[..., FakeProcess]) -> None:
    def fails() -> None:
        raise RuntimeError("boom")

    spawn({"echo": fails})
    result = await spawn().calls.publish("echo", {}, expect_answers=True, timeout=5)
    assert result is not None
    (answer,) = result
    assert isinstance(answer, RawAnswer)
    assert (answer.ok, answer.error_type, answer.error_message) == (False, "RuntimeError", "boom")


async def test_signed_frames_only_and_no_replay(
    bus: FakeBus, spawn: Callable[..., FakeProcess], caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []
    listener = spawn({"echo": lambda tag: calls.append(tag)}, secret="the-secret")
    caller = spawn(secret="the-secret")
    await caller.calls.publish("echo", {"tag": "signed"}, expect_answers=True, timeout=5)
    channel = PREFIX + "echo"
    (_, captured) = next(item for item in bus.published if item[0] == channel)

    def frame(tag: str, secret: str | None) -> bytes:
        body = json.dumps({"id": tag, "ts": time.time(), "params": {"tag": tag}, "reply": None}).encode()
        return _signing.Signer(secret).sign(channel, body)

    with caplog.at_level(logging.WARNING, logger="c2casgiutils.broadcast"):
        for data in (captured, frame("unsigned", None), frame("wrong", "another"), b"garbage"):
            listener.calls.receive(channel.encode(), data)
        listener.calls.receive(channel.encode(), frame("good", "the-secret"))
        await asyncio.sleep(0.1)
    assert calls == ["signed", "good"]
    for reason in ("replayed message", "unsigned message", "wrong signature", "malformed"):
        assert reason in caplog.text


async def test_not_connected_waits_for_the_listener_then_fails_clearly(spawn: Callable[..., FakeProcess]) -> None:
    spawn({"echo": lambda: "ok"})
    caller = spawn()
    caller.endpoint.connected = False
    started = time.monotonic()
    with pytest.raises(BroadcastUnavailableError, match=r"not connected to the fake bus \(waited 0.5s\)"):
        await caller.calls.publish("echo", {}, expect_answers=True, timeout=10)
    assert time.monotonic() - started < 5  # the transport's bound, not the broadcast timeout
    with pytest.raises(BroadcastUnavailableError, match="not sent"):
        await caller.calls.publish("echo", {}, expect_answers=False, timeout=10)
    asyncio.get_running_loop().call_later(0.1, setattr, caller.endpoint, "connected", True)
    result = await caller.calls.publish("echo", {}, expect_answers=True, timeout=10)  # reconnected meanwhile
    assert [a.payload for a in result or [] if isinstance(a, RawAnswer)] == ["ok"]


async def test_without_answers_delivery_is_retried_while_listeners_are_missing(
    spawn: Callable[..., FakeProcess], caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []
    late = spawn({"echo": _counting(calls, 1)}, listening=False)
    caller = spawn(delivery_timeout=5.0)
    asyncio.get_running_loop().call_later(0.15, late.listen)
    assert await caller.calls.publish("echo", {}, expect_answers=False, timeout=10) is None
    deadline = time.monotonic() + 5
    while not calls and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert calls == [1]  # reached by a repeated attempt, run once

    never = spawn({"other": _counting(calls, 2)}, listening=False)
    short = spawn(delivery_timeout=0.5)
    with caplog.at_level(logging.WARNING, logger="c2casgiutils.broadcast"):
        await short.calls.publish("other", {}, expect_answers=False, timeout=10)
        await asyncio.sleep(1.0)
    assert "Broadcast on 'test_other' reached 0 of the 1 processes expected" in caplog.text
    assert never.pid not in calls


async def test_release_frees_the_callers_at_once(spawn: Callable[..., FakeProcess]) -> None:
    entered = asyncio.Event()

    async def hangs() -> None:
        entered.set()
        await asyncio.sleep(3600)

    spawn({"echo": hangs})
    caller = spawn()
    waiting = asyncio.ensure_future(caller.calls.publish("echo", {}, expect_answers=True, timeout=3600))
    await asyncio.wait_for(entered.wait(), 5)
    caller.calls.release()
    result = await asyncio.wait_for(waiting, 5)
    assert result is not None
    assert len(result) == 1
    assert isinstance(result[0], MissingAnswer)  # expected (in the table), no answer


async def test_an_answer_to_no_pending_request_is_ignored(spawn: Callable[..., FakeProcess]) -> None:
    caller = spawn()
    answer = RawAnswer(hostname="h", pid=1, payload="late").model_dump()
    body = json.dumps({"id": "finished-long-ago", "answer": answer}).encode()
    channel = caller.calls.answer_channel
    caller.calls.receive(channel.encode(), _signing.Signer(None).sign(channel, body))  # nothing waits: no error
    spawn({"echo": lambda: "ok"})
    result = await caller.calls.publish("echo", {}, expect_answers=True, timeout=5)
    assert [a.payload for a in result or [] if isinstance(a, RawAnswer)] == ["ok"]
