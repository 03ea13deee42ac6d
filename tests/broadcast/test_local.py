"""The public functions of broadcast on the local backend (one process): handlers, typed decorate, errors, inputs."""

from __future__ import annotations

import asyncio
import os

import pytest

from c2casgiutils import broadcast
from c2casgiutils.broadcast import MissingAnswer
from c2casgiutils.broadcast import types as broadcast_types
from tests.broadcast_apps.models import Echo, Point, echo_points

pytestmark = pytest.mark.timeout(60)


async def test_local_broadcast_calls_the_handler_of_this_process() -> None:
    calls: list[dict[str, object]] = []

    async def handler(**params: object) -> str:
        calls.append(params)
        return "done"

    await broadcast.subscribe("local_chan", handler)
    assert broadcast.backend_name() == "local"
    assert await broadcast.broadcast("local_chan", {"a": 1}) is None
    assert calls == [{"a": 1}]
    answers = await broadcast.broadcast("local_chan", {"a": 2}, expect_answers=True)
    assert answers is not None
    assert len(answers) == 1
    assert isinstance(answers[0], broadcast_types.BroadcastResponse)
    assert answers[0].payload == "done"
    assert answers[0].pid == os.getpid()
    assert await broadcast.broadcast("nobody_listens", expect_answers=True) == []

    broadcast.unsubscribe("local_chan")  # usable without await
    assert await broadcast.broadcast("local_chan", {"a": 3}, expect_answers=True) == []
    assert len(calls) == 2


async def test_decorate_rebuilds_pydantic_models_from_hints() -> None:
    echo = await broadcast.decorate(echo_points, expect_answers=True)
    answers = await echo(Point(x=1, y=2), scale=3)
    assert answers is not None
    (answer,) = answers
    assert isinstance(answer, broadcast_types.BroadcastResponse)
    assert answer.payload == Echo(points=[Point(x=3, y=6)], total=9)
    assert "c2c_decorated_tests.broadcast_apps.models.echo_points" in broadcast._STATE.registry


async def test_decorate_sync_function_without_answers_and_explicit_channel() -> None:
    seen: list[int] = []

    def record(value: int) -> None:
        seen.append(value)

    call = await broadcast.decorate(record, channel="record_chan")
    assert await call(5) is None
    assert seen == [5]
    assert "record_chan" in broadcast._STATE.registry


async def test_handler_error_becomes_an_error_answer() -> None:
    def failing() -> int:
        raise ValueError("cannot do it")

    call = await broadcast.decorate(failing, expect_answers=True)
    answers = await call()
    assert answers is not None
    (answer,) = answers
    assert isinstance(answer, broadcast.ErrorAnswer)
    assert isinstance(answer, MissingAnswer)
    assert answer.status == "error"
    assert answer.error_type == "ValueError"
    assert answer.message == "cannot do it"
    assert answer.pid == os.getpid()


async def test_answer_not_matching_the_return_type_is_an_error_answer() -> None:
    def lies() -> int:
        return "not a number"  # type: ignore[return-value]

    answers = await (await broadcast.decorate(lies, expect_answers=True))()
    assert answers is not None
    assert isinstance(answers[0], broadcast.ErrorAnswer)
    assert answers[0].error_type == "ValidationError"


async def test_slow_local_handler_is_missing_after_the_timeout() -> None:
    async def slow() -> None:
        await asyncio.sleep(30)

    answers = await (await broadcast.decorate(slow, expect_answers=True, timeout=0.2))()
    assert answers is not None
    assert type(answers[0]) is MissingAnswer
    assert answers[0].status == "timeout"


async def test_bad_inputs_are_refused_with_clear_errors() -> None:
    with pytest.raises(ValueError, match="non-empty string"):
        broadcast.subscribe("", print)
    with pytest.raises(TypeError, match="not callable"):
        broadcast.subscribe("chan", "not a function")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="mapping"):
        await broadcast.broadcast("chan", [1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        await broadcast.broadcast("chan", {}, expect_answers=True, timeout=0)

    def star_args(*values: int) -> None: ...

    with pytest.raises(TypeError, match="cannot be passed by name"):
        await broadcast.decorate(star_args)

    calls: list[int] = []

    def one(value: int) -> None:
        calls.append(value)

    call = await broadcast.decorate(one)
    with pytest.raises(TypeError):
        await call(1, 2)  # type: ignore[call-arg]
    assert calls == []
    assert "chan" not in broadcast._STATE.registry


