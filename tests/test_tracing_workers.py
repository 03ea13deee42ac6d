"""Tracing across real processes: two services chained, spans of 3 workers to a collector, exemplars in Prometheus.

- Two services of ours (real uvicorn) chained through the package's httpx helper: one trace id in both services'
  JSON logs, and the second service's parent is the first's span; with and without span export.
- 3 uvicorn workers export to a local OTLP/HTTP receiver (real protobuf): every request's server span arrives,
  those of the requests still in flight when the service got SIGTERM included (sent by ``shutdown()``'s flush).
- Debian's Prometheus with ``--enable-feature=exemplar-storage`` scrapes 3 workers (multiprocess mode): the trace
  ids sent through each worker come back from ``/api/v1/query_exemplars``, an unsampled one never does, and
  ``up`` stays 1.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from tests.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.servers import free_port, wait_port
from tests.test_prometheus_workers import PrometheusServer, _prometheus_binaries
from tests.tracing_fixtures import TracingService, wait_for

pytestmark = pytest.mark.slow
WORKERS = 3
SPAN = "00f067aa0ba902b7"


def _traceparent(number: int, sampled: bool = True) -> str:
    return f"00-{number:032x}-{SPAN}-{'01' if sampled else '00'}"


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as started:
        yield started


@pytest.mark.parametrize("export", [False, True], ids=["logs-only", "otlp-export"])
def test_two_services_chained_share_the_trace(tmp_path: Path, receiver: OtlpReceiver, export: bool) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint} if export else {}
    second = TracingService(tmp_path, "second", env=env).start()
    first = TracingService(tmp_path, "first", env=env).start()
    try:
        answer = first.get("/call", params={"url": f"{second.url}/hello"})
        assert answer.status_code == 200, answer.text
        own, downstream = answer.json()["own"], answer.json()["downstream"]
    finally:
        first.stop()
        second.stop()
    trace_id = own["trace_id"]
    assert downstream["trace_id"] == trace_id
    first_lines = [entry for entry in first.json_logs() if entry.get("trace_id") == trace_id]
    second_lines = [entry for entry in second.json_logs() if entry.get("trace_id") == trace_id]
    assert {entry["logger"] for entry in first_lines} >= {"tracing_service", "uvicorn.access"}
    assert {entry["logger"] for entry in second_lines} >= {"tracing_service", "uvicorn.access"}
    assert {entry["span_id"] for entry in first_lines} == {own["span_id"]}
    assert {entry["span_id"] for entry in second_lines} == {downstream["span_id"]}
    if not export:
        assert downstream["parent_id"] == own["span_id"]  # the first service's span is the second's parent
        assert receiver.spans() == []
        return
    spans = {span.span_id: span for span in receiver.spans() if span.trace_id == trace_id}
    servers = {span.service: span for span in spans.values() if span.kind == "SPAN_KIND_SERVER"}
    assert set(servers) == {"first", "second"}
    assert servers["first"].span_id == own["span_id"]
    assert servers["second"].span_id == downstream["span_id"]
    assert servers["first"].parent_id == ""  # the trace started in the first service
    # The second's parent is a span of the first service: its server span, or a child of it (FastAPI's own
    # endpoint span, current when the call was made).
    parent = spans[servers["second"].parent_id]
    assert parent.service == "first"
    while parent.kind != "SPAN_KIND_SERVER":
        parent = spans[parent.parent_id]
    assert parent == servers["first"]
    assert downstream["parent_id"] == servers["second"].parent_id


class _Holders:
    """Client threads that each hold one ``/hold`` request open until the service releases it."""

    def __init__(self, service: TracingService) -> None:
        self.service = service
        self.threads: list[threading.Thread] = []
        self.answers: dict[int, int] = {}

    def start(self, number: int) -> None:
        thread = threading.Thread(target=self._hold, args=(number,), daemon=True)
        thread.start()
        self.threads.append(thread)

    def _hold(self, number: int) -> None:
        with contextlib.suppress(httpx.HTTPError):
            self.answers[number] = self.service.get("/hold", headers={"traceparent": _traceparent(number)}).status_code

    def held(self) -> int:
        return len(list((self.service.state / "held").iterdir()))

    def join(self) -> None:
        for thread in self.threads:
            thread.join(90)


def _server_spans(spans: list[ReceivedSpan]) -> dict[str, list[ReceivedSpan]]:
    by_trace: dict[str, list[ReceivedSpan]] = {}
    for span in spans:
        if span.kind == "SPAN_KIND_SERVER":
            by_trace.setdefault(span.trace_id, []).append(span)
    return by_trace


def test_every_span_of_three_workers_reaches_the_collector_through_sigterm(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "600000",  # nothing is sent before the flush of shutdown()
    }
    service = TracingService(tmp_path, "workers", workers=WORKERS, env=env).start()
    holders = _Holders(service)
    pids: dict[int, int] = {}
    try:
        number = 0
        deadline = time.monotonic() + 120
        while (len(set(pids.values())) < WORKERS or number < 60) and time.monotonic() < deadline:
            number += 1
            response = service.get("/hello", headers={"traceparent": _traceparent(number)})
            assert response.status_code == 200
            assert response.json()["trace_id"] == f"{number:032x}"
            pids[number] = response.json()["pid"]
        assert set(pids.values()) == service.worker_pids(), "the requests never reached every worker"
        held = [100_000 + index for index in range(9)]
        for trace in held:
            holders.start(trace)
        wait_for("9 requests in flight", lambda: holders.held() == len(held))
        assert service.process is not None
        service.process.send_signal(signal.SIGTERM)  # uvicorn stops every worker; in-flight requests finish
        time.sleep(1.5)
        assert holders.held() == len(held)  # still in flight after SIGTERM
        (service.state / "release").touch()
        holders.join()
        assert service.exited(90) == 0
    finally:
        (service.state / "release").touch()
        service.stop()
    assert holders.answers == dict.fromkeys(held, 200)
    by_trace = _server_spans(receiver.spans())
    expected = {f"{number:032x}" for number in [*pids, *held]}
    assert set(by_trace) >= expected, f"missing spans of {len(expected - set(by_trace))} requests"
    assert all(len(by_trace[trace_id]) == 1 for trace_id in expected)  # one server span per request
    assert {by_trace[f"{number:032x}"][0].name for number in pids} == {"GET /hello"}
    assert {by_trace[f"{number:032x}"][0].name for number in held} == {"GET /hold"}
    assert all(by_trace[trace_id][0].parent_id == SPAN for trace_id in expected)
    assert not receiver.rejected
    output = service.logs_text()
    assert "Traceback" not in output, output


def _exemplar_trace_ids(prometheus: PrometheusServer, start: float) -> set[str]:
    response = httpx.get(
        prometheus.url + "/api/v1/query_exemplars",
        params={"query": '{__name__=~"http_requests_total|http_request_duration_seconds_bucket"}', "start": start,
                "end": time.time() + 5},
        timeout=10,
    )
    response.raise_for_status()
    return {
        exemplar["labels"]["trace_id"]
        for series in response.json()["data"]
        for exemplar in series["exemplars"]
    }


def test_prometheus_gets_the_exemplars_of_every_worker(tmp_path: Path) -> None:
    prometheus_binary, _ = _prometheus_binaries()
    metrics_port = free_port()
    (tmp_path / "multiproc").mkdir()
    service = TracingService(
        tmp_path,
        "exemplars",
        workers=WORKERS,
        env={
            "C2C__PROMETHEUS__PORT": str(metrics_port),
            "C2C__PROMETHEUS__HOST": "127.0.0.1",
            "C2C__PROMETHEUS__PREFIX": "",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "multiproc"),
        },
    ).start()
    prometheus: PrometheusServer | None = None
    try:
        wait_port(metrics_port, timeout=60)
        workers = service.worker_pids()
        prometheus = PrometheusServer(
            prometheus_binary, tmp_path, metrics_port, flags=("--enable-feature=exemplar-storage",)
        )
        start = time.time()
        wait_for("first scrape", lambda: prometheus is not None and prometheus.value("up") == 1)
        confirmed: dict[int, str] = {}
        number = 0
        deadline = time.monotonic() + 240
        while set(confirmed) != workers and time.monotonic() < deadline:
            number += 1
            answer = service.get("/hello", headers={"traceparent": _traceparent(number)}).json()
            if answer["pid"] in confirmed:
                continue
            # The newest exemplar of its series: the next scrape stores it (nothing newer is sent meanwhile).
            trace_id = f"{number:032x}"
            wait_for(f"exemplar {trace_id}", lambda: trace_id in _exemplar_trace_ids(prometheus, start), timeout=30)
            confirmed[answer["pid"]] = trace_id
        assert set(confirmed) == workers, f"exemplars seen from {set(confirmed)} of {workers}"
        unsampled = f"{10**9:032x}"
        assert service.get("/hello", headers={"traceparent": _traceparent(10**9, sampled=False)}).status_code == 200
        time.sleep(4)  # several scrapes
        assert unsampled not in _exemplar_trace_ids(prometheus, start)
        # The page Prometheus scrapes parses as OpenMetrics, and has exemplars only in that format.
        page = httpx.get(
            f"http://127.0.0.1:{metrics_port}/metrics", headers={"Accept": "application/openmetrics-text"}, timeout=10
        ).text
        families = list(text_string_to_metric_families(page))
        assert any(sample.exemplar for family in families for sample in family.samples)
        assert " # {" not in httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        window = int(time.time() - start) + 2
        assert prometheus.value(f"min_over_time(up[{window}s])") == 1
        assert (prometheus.value(f"count_over_time(up[{window}s])") or 0) >= 5
    finally:
        if prometheus is not None:
            prometheus.stop()
        service.stop()
    output = service.logs_text()
    assert "Traceback" not in output, output


