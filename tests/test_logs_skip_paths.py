"""C2C__ACCESS_LOG__SKIP_PATHS: uvicorn's access log leaves out the successful probes, and only them."""

from __future__ import annotations

import logging
import re
import signal
import time
from pathlib import Path

import httpx
import pytest

from c2casgiutils import logs
from tests.lifecycle_servers import LIVENESS, READINESS, UvicornInstance

PROBES = f"{LIVENESS},{READINESS}"
_ACCESS_LINE = re.compile(r'"(GET|HEAD) (\S+) HTTP/1\.1" (\d{3})')


def access_lines(output: str) -> list[tuple[str, int]]:
    return [(match.group(2), int(match.group(3))) for match in _ACCESS_LINE.finditer(output)]


def record(path: str, status: int) -> logging.LogRecord:
    """A record as uvicorn's access logger makes it."""
    return logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        "",
        0,
        '%s - "%s %s HTTP/%s" %d',
        ("1.2.3.4:5", "GET", path, "1.1", status),
        None,
    )


def test_exact_targets_and_paths_with_any_query() -> None:
    skip = logs.SkipPathsFilter(["/c2c/health_checks?tags=liveness", "/metrics"])
    assert not skip.filter(record("/c2c/health_checks?tags=liveness", 200))
    assert not skip.filter(record("/metrics", 200))
    assert not skip.filter(record("/metrics?name=x", 204))
    for kept in (
        record("/c2c/health_checks?tags=liveness", 503),
        record("/c2c/health_checks?tags=liveness", 301),
        record("/c2c/health_checks?tags=readiness", 200),
        record("/c2c/health_checks", 200),
        record("/metrics/other", 200),
        record("/", 200),
    ):
        assert skip.filter(kept), kept.args
    # Records of another shape pass untouched.
    assert skip.filter(logging.LogRecord("uvicorn.access", logging.INFO, "", 0, "free text", None, None))


def test_installing_again_replaces_the_filter() -> None:
    logger = logging.getLogger(logs.ACCESS_LOGGER)
    try:
        logs.skip_access_log_paths(["/a"])
        logs.skip_access_log_paths(["/b"])
        (found,) = [item for item in logger.filters if isinstance(item, logs.SkipPathsFilter)]
        assert found.any_query == {"/b"}
        logs.skip_access_log_paths([])
        assert not [item for item in logger.filters if isinstance(item, logs.SkipPathsFilter)]
    finally:
        logs.skip_access_log_paths([])


@pytest.mark.slow
def test_uvicorn_access_log_without_the_successful_probes(tmp_path: Path) -> None:
    """Real uvicorn: the probes' 200 are left out, their 503 while draining are logged, other requests too."""
    instance = UvicornInstance(
        tmp_path / "service", drain=3.0, env={"C2C__ACCESS_LOG__SKIP_PATHS": PROBES}, extra_args=("--log-level", "info")
    )
    try:
        instance.start()  # waits for the readiness probe: 200, left out
        for path in (LIVENESS, READINESS, LIVENESS):
            assert httpx.get(instance.url + path, timeout=10).status_code == 200
        assert httpx.get(instance.url + "/", timeout=10).status_code == 200
        assert httpx.get(instance.url + "/c2c/health_checks", timeout=10).status_code == 200
        assert httpx.get(instance.url + LIVENESS + "&extra=1", timeout=10).status_code == 200
        instance.send(signal.SIGTERM)
        deadline = time.monotonic() + 20
        draining = None
        while draining is None and time.monotonic() < deadline:
            answer = httpx.get(instance.url + READINESS, timeout=10)
            draining = answer if answer.status_code == 503 else None
        assert draining is not None, "readiness never answered 503 while draining"
        instance.wait(60)  # the drain ends, then uvicorn stops
    finally:
        instance.close()
    lines = access_lines(instance.output())
    assert (READINESS, 200) not in lines
    assert (LIVENESS, 200) not in lines
    assert (READINESS, 503) in lines  # a failing probe is still logged
    assert ("/", 200) in lines
    assert ("/c2c/health_checks", 200) in lines
    assert (LIVENESS + "&extra=1", 200) in lines
