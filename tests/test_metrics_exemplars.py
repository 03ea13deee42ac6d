"""OpenMetrics exemplars of the request metrics: in one process, and with several workers (multiprocess mode).

The exemplar files are read and written as the workers and the metrics server do; the expositions are parsed with
prometheus_client's own OpenMetrics parser. Multiprocess cases run in fresh interpreters (prometheus_client picks
its mode when first imported), with real forked and exited processes for "newest among live workers".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from c2casgiutils import _metrics_exemplars, _metrics_multiproc, prometheus, tracing
from c2casgiutils._metrics_exemplars import ExemplarFile, read_file

ROOT = Path(__file__).parent.parent
TRACE_A = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACE_B = "0af7651916cd43dd8448eb211c80319c"
SPAN = "00f067aa0ba902b7"


def _exemplars(exposition: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], Any]:
    """Every exemplar of an OpenMetrics page, by sample; the page must parse."""
    found = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.exemplar is not None:
                found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.exemplar
    return found


def test_file_round_trip_newest_wins_and_unwritten_slots_are_absent(tmp_path: Path) -> None:
    file = ExemplarFile(str(tmp_path), pid=123)
    total = file.allocate("http_requests_total", {"method": "GET", "status": "2xx", "handler": "/a"})
    bucket = file.allocate("d_bucket", {"le": "0.5"})
    unused = file.allocate("d_bucket", {"le": "1.0"})
    assert (total, bucket, unused) == (0, 1, 2)
    file.write(total, 1.0, 1000.0, bytes.fromhex(TRACE_A), bytes.fromhex(SPAN))
    file.write(bucket, 0.25, 1000.5, bytes.fromhex(TRACE_A), bytes.fromhex(SPAN))
    file.write(bucket, 0.3, 1001.0, bytes.fromhex(TRACE_B), bytes.fromhex(SPAN))
    found = read_file(file.path)
    total_key = ("http_requests_total", (("handler", "/a"), ("method", "GET"), ("status", "2xx")))
    assert found == {
        total_key: (TRACE_A, SPAN, 1.0, 1000.0),
        ("d_bucket", (("le", "0.5"),)): (TRACE_B, SPAN, 0.3, 1001.0),
    }
    assert found[("d_bucket", (("le", "0.5"),))].labels == {"trace_id": TRACE_B, "span_id": SPAN}
    assert len("".join(f"{k}{v}" for k, v in found[("d_bucket", (("le", "0.5"),))].labels.items())) <= 128
    file.close()
    # A new process with the same pid starts a new file: the old exemplars are not its own.
    assert read_file(ExemplarFile(str(tmp_path), pid=123).path) == {}


def test_a_slot_caught_half_written_is_skipped(tmp_path: Path) -> None:
    file = ExemplarFile(str(tmp_path), pid=5)
    first = file.allocate("a_total", {})
    second = file.allocate("b_total", {})
    assert first is not None
    assert second is not None
    file.write(first, 1.0, 10.0, bytes.fromhex(TRACE_A), bytes.fromhex(SPAN))
    file.write(second, 1.0, 11.0, bytes.fromhex(TRACE_B), bytes.fromhex(SPAN))
    file.close()
    data = bytearray(Path(file.path).read_bytes())
    # Inside the first slot's trace id (after the CRC, the value and the timestamp).
    offset = _metrics_exemplars.HEADER_SIZE + _metrics_exemplars.SLOT_SIZE * first + 4 + 16
    data[offset : offset + 4] = b"\xff\xff\xff\xff"  # a write of another trace id, half done
    Path(file.path).write_bytes(bytes(data))
    assert list(read_file(file.path)) == [("b_total", ())]


def test_bounded_slots_and_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_metrics_exemplars, "CAPACITY", 2)
    file = ExemplarFile(str(tmp_path), pid=6)
    assert file.allocate("x_total", {"handler": "/" + "a" * _metrics_exemplars.MAX_KEY}) is None
    assert [file.allocate("x_total", {"n": str(n)}) for n in range(3)] == [0, 1, None]
    assert Path(file.path).stat().st_size == _metrics_exemplars.HEADER_SIZE + 2 * _metrics_exemplars.SLOT_SIZE
    assert read_file(str(tmp_path / "missing.bin")) == {}
    Path(tmp_path / "foreign.bin").write_bytes(b"not an exemplar file at all")
    assert read_file(str(tmp_path / "foreign.bin")) == {}


def test_newest_among_live_workers_and_dead_workers_files_removed(tmp_path: Path) -> None:
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(30)
    try:
        series = ("x_total", {"handler": "/a"})
        writers = ((os.getpid(), TRACE_A, 100.0), (live.pid, TRACE_B, 200.0), (dead.pid, "f" * 32, 300.0))
        for pid, trace_id, moment in writers:
            file = ExemplarFile(str(tmp_path), pid=pid)
            slot = file.allocate(*series)
            assert slot is not None
            file.write(slot, 1.0, moment, bytes.fromhex(trace_id), bytes.fromhex(SPAN))
            file.close()
        alive, gone = _metrics_multiproc.mark_dead_processes(str(tmp_path))
        assert alive == {os.getpid(), live.pid}
        assert gone == {dead.pid}
        assert not (tmp_path / f"c2c-exemplars-{dead.pid}.bin").exists()
        newest = _metrics_exemplars.newest(str(tmp_path), alive)
        assert newest[("x_total", (("handler", "/a"),))].trace_id == TRACE_B
    finally:
        live.kill()
        live.wait(30)
    alive, gone = _metrics_multiproc.mark_dead_processes(str(tmp_path))
    assert gone == {live.pid}
    assert _metrics_exemplars.newest(str(tmp_path), alive)[("x_total", (("handler", "/a"),))].trace_id == TRACE_A


async def test_one_process_exemplars_only_in_openmetrics() -> None:
    registry = CollectorRegistry()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    stack = tracing.TraceContextMiddleware(prometheus.PrometheusMiddleware(app, registry=registry, prefix="one_"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=stack), base_url="http://t") as client:
        await client.get("/", headers={"traceparent": f"00-{TRACE_A}-{SPAN}-01"})
        await client.get("/", headers={"traceparent": f"00-{TRACE_B}-{SPAN}-00"})  # not sampled: no exemplar
    exemplars = _exemplars(generate_openmetrics(registry).decode())
    total = exemplars[("one_http_requests_total", (("handler", "none"), ("method", "GET"), ("status", "2xx")))]
    assert total.labels["trace_id"] == TRACE_A
    assert total.value == 1.0
    buckets = [key for key in exemplars if key[0].endswith("_bucket")]
    assert {key[0] for key in buckets} == {
        "one_http_request_duration_seconds_bucket",
        "one_http_request_duration_highr_seconds_bucket",
    }
    assert all(exemplars[key].labels["trace_id"] == TRACE_A for key in buckets)
    assert " # {" not in generate_latest(registry).decode()  # Prometheus' text format has no exemplars


MULTIPROCESS = """
import asyncio, json, os, sys, time
import httpx
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
import c2casgiutils
from c2casgiutils import _metrics_multiproc, prometheus, request_id

async def app(scope, receive, send):
    await asyncio.sleep(0.6 if scope["path"] == "/slow" else 0)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})

stack = request_id.RequestIdMiddleware(prometheus.PrometheusMiddleware(app))

async def get(path, traceparent):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=stack), base_url="http://t") as client:
        await client.get(path, headers={"traceparent": traceparent})

def page():
    registry = CollectorRegistry()
    registry.register(_metrics_multiproc.LiveMultiProcessCollector(os.environ["PROMETHEUS_MULTIPROC_DIR"]))
    return generate_openmetrics(registry).decode(), generate_latest(registry).decode()

span = "00f067aa0ba902b7"
asyncio.run(get("/slow", f"00-{'a' * 32}-{span}-01"))
asyncio.run(get("/", f"00-{'b' * 32}-{span}-01"))
asyncio.run(get("/", f"00-{'c' * 32}-{span}-00"))
read, write = os.pipe()
child = os.fork()
if child == 0:  # a second worker: its request is the newest
    time.sleep(0.05)
    asyncio.run(get("/", f"00-{'d' * 32}-{span}-01"))
    os.write(write, b"x")
    time.sleep(30)
    os._exit(0)
os.read(read, 1)
with_child = page()
os.kill(child, 9)
os.waitpid(child, 0)
print(json.dumps({"with_child": with_child, "after_child": page()}))
"""


def test_multiprocess_exemplars_newest_among_live_workers(tmp_path: Path) -> None:
    directory = tmp_path / "multiproc"
    directory.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("C2C__") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update({"PYTHONPATH": str(ROOT), "PROMETHEUS_MULTIPROC_DIR": str(directory), "C2C__PROMETHEUS__PREFIX": ""})
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(MULTIPROCESS)],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    pages = json.loads(result.stdout)
    total = ("http_requests_total", (("handler", "none"), ("method", "GET"), ("status", "2xx")))
    slow_bucket = ("http_request_duration_seconds_bucket", (("handler", "none"), ("le", "1.0"), ("method", "GET")))
    fast_bucket = ("http_request_duration_seconds_bucket", (("handler", "none"), ("le", "0.1"), ("method", "GET")))
    with_child = _exemplars(pages["with_child"][0])
    assert with_child[total].labels["trace_id"] == "d" * 32  # the other live worker's request is the newest
    assert with_child[fast_bucket].labels["trace_id"] == "d" * 32
    assert with_child[slow_bucket].labels["trace_id"] == "a" * 32  # the bucket the slow request fell in
    assert 0.5 < with_child[slow_bucket].value <= 1.0
    after_child = _exemplars(pages["after_child"][0])
    assert after_child[total].labels["trace_id"] == "b" * 32  # the killed worker's exemplar is gone
    assert after_child[fast_bucket].labels["trace_id"] == "b" * 32
    for exemplar in [*with_child.values(), *after_child.values()]:
        assert set(exemplar.labels) == {"trace_id", "span_id"}
        assert sum(len(name) + len(value) for name, value in exemplar.labels.items()) <= 128
        assert exemplar.timestamp is not None
        assert abs(float(exemplar.timestamp) - time.time()) < 300
    # The counter still counts every request of both workers; Prometheus' text format carries no exemplar.
    families = {family.name: family for family in text_string_to_metric_families(pages["after_child"][0])}
    assert next(s.value for s in families["http_requests"].samples if s.name == "http_requests_total") == 4
    assert " # {" not in pages["after_child"][1]
