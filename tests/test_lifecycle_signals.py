"""``lifecycle/_signals.py``: real signals to this process, whose "server" handlers record when they run."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType

import pytest

from c2casgiutils.lifecycle._signals import SignalDrain
from c2casgiutils.request_id import request_id_var
from c2casgiutils.tracing import TraceContext, trace_context_var


class ServerHandlers:
    """Stands for uvicorn's ``handle_exit``: a Python handler of SIGTERM and SIGINT that records each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, float]] = []

    def __call__(self, sig: int, frame: FrameType | None) -> None:
        self.calls.append((sig, time.monotonic()))


@pytest.fixture
def server() -> Iterator[ServerHandlers]:
    handlers = ServerHandlers()
    previous = {sig: signal.signal(sig, handlers) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield handlers
    for sig, handler in previous.items():
        signal.signal(sig, handler)


async def _until(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not reached in time"
        await asyncio.sleep(0.01)


async def test_sigterm_drains_first_and_reaches_the_server_after_the_delay(server: ServerHandlers) -> None:
    drained: list[float] = []
    drain = SignalDrain(0.5, lambda: drained.append(time.monotonic()))
    assert drain.install()
    try:
        sent = time.monotonic()
        os.kill(os.getpid(), signal.SIGTERM)
        await _until(lambda: drained)
        assert not server.calls, "the server must not shut down during the drain"
        assert drain.terminating
        await _until(lambda: server.calls)
        ((sig, called),) = server.calls
        assert sig == signal.SIGTERM
        assert called - sent >= 0.5
        assert len(drained) == 1
    finally:
        drain.uninstall()
    assert signal.getsignal(signal.SIGTERM) is server


async def test_a_second_sigterm_ends_the_drain_at_once(server: ServerHandlers) -> None:
    drain = SignalDrain(30, lambda: None)
    assert drain.install()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(0.1)
        assert not server.calls
        os.kill(os.getpid(), signal.SIGTERM)
        await _until(lambda: server.calls)
        await asyncio.sleep(0.1)
        assert [sig for sig, _ in server.calls] == [signal.SIGTERM]  # once: the timer was cancelled
    finally:
        drain.uninstall()


async def test_the_drain_is_not_run_in_the_request_the_signal_interrupted(server: ServerHandlers) -> None:
    """The signal lands between two bytecodes of whatever runs, often a request: the drain (and its log lines)
    must not carry that request's ids."""
    seen: list[tuple[object, object]] = []
    drain = SignalDrain(0.0, lambda: seen.append((request_id_var.get(), trace_context_var.get())))
    assert drain.install()
    token = request_id_var.set("interrupted-request")
    trace_token = trace_context_var.set(TraceContext("1" * 32, "2" * 16, True))
    try:
        os.kill(os.getpid(), signal.SIGTERM)  # handled here, in this request's context
        await _until(lambda: seen)
    finally:
        trace_context_var.reset(trace_token)
        request_id_var.reset(token)
        drain.uninstall()
    assert seen == [(None, None)]
    assert [sig for sig, _ in server.calls] == [signal.SIGTERM]


@pytest.mark.parametrize("delay", [0.0, 30.0])
async def test_sigint_does_not_wait(server: ServerHandlers, delay: float) -> None:
    drained: list[float] = []
    drain = SignalDrain(delay, lambda: drained.append(time.monotonic()))
    assert drain.install()
    try:
        os.kill(os.getpid(), signal.SIGINT)
        await _until(lambda: server.calls)
        assert [sig for sig, _ in server.calls] == [signal.SIGINT]
        await _until(lambda: drained)  # the process drains too: readiness fails while it stops
    finally:
        drain.uninstall()


async def test_no_delay_forwards_sigterm_at_once(server: ServerHandlers) -> None:
    drain = SignalDrain(0, lambda: None)
    assert drain.install()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        await _until(lambda: server.calls)
    finally:
        drain.uninstall()


async def test_nothing_is_installed_without_a_server_handler() -> None:
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        drain = SignalDrain(5, lambda: None)
        assert not drain.install()
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_nothing_is_installed_outside_the_main_thread(server: ServerHandlers) -> None:
    results: list[bool] = []

    async def install() -> None:
        results.append(SignalDrain(5, lambda: None).install())

    thread = threading.Thread(target=lambda: asyncio.run(install()))
    thread.start()
    thread.join(30)
    assert results == [False]
    assert signal.getsignal(signal.SIGTERM) is server
