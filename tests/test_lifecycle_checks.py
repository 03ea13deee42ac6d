"""The built-in probes: ReadinessState and LivenessState read this process's availability."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from c2casgiutils._health.runner import execute
from c2casgiutils.lifecycle._checks import LivenessState, ReadinessState
from c2casgiutils.lifecycle._drain import ProcessDrain


@pytest.fixture
def drain(tmp_path: Path) -> Iterator[ProcessDrain]:
    process = ProcessDrain()
    process.begin(0, str(tmp_path))
    yield process
    process.end()


async def test_readiness_follows_the_state_and_liveness_stays_up(drain: ProcessDrain) -> None:
    readiness, liveness = ReadinessState(drain=drain), LivenessState(drain=drain)
    assert (await execute(readiness)).status_code == 503  # starting
    assert (await execute(liveness)).status_code == 200
    drain.started()
    ready = await execute(readiness)
    assert (ready.status_code, ready.payload["state"]) == (200, "accepting")
    drain.enter_draining()
    ready, live = await execute(readiness), await execute(liveness)
    assert (ready.status_code, ready.payload["state"]) == (503, "draining")
    assert (live.status_code, live.payload["state"]) == (200, "draining")


async def test_a_refusing_readiness_probe_is_not_a_warning(
    drain: ProcessDrain, caplog: pytest.LogCaptureFixture
) -> None:
    """Readiness refuses by design while the instance starts or drains: probes every second add no warning."""
    drain.enter_draining()
    with caplog.at_level(logging.DEBUG, logger="c2casgiutils"):
        for _ in range(3):
            assert (await execute(ReadinessState(drain=drain))).status_code == 503
    failures = [record for record in caplog.records if "failed with status" in record.getMessage()]
    assert [record.levelno for record in failures] == [logging.DEBUG] * 3
