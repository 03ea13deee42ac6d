"""_metrics_memory: the in-memory request series expose exactly what prometheus_client's own objects expose,
exemplars included (OpenMetrics only)."""

from __future__ import annotations

import re
import threading

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from c2casgiutils import _metrics_memory
from c2casgiutils._metrics_memory import RECORD_BATCH, Help, RequestMetrics
from c2casgiutils.tracing import TraceContext

TEXTS = Help("total", "request size", "response size", "highr", "lowr", "in progress")
HIGHR = (0.1, 1.0, float("inf"))
LOWR = (0.5, float("inf"))
# The first and the last carry a sampled trace: the last replaces the first's exemplar where they share a series.
REQUESTS = [
    (("/x", "GET", "2xx"), 5, 7, 0.2, TraceContext("a" * 32, "b" * 16, True)),
    (("/y/{id}", "POST", "4xx"), 0, 3, 2.0, None),
    (("/x", "GET", "2xx"), 1, 1, 0.1, TraceContext("c" * 32, "d" * 16, True)),
]


def _reference(registry: CollectorRegistry) -> tuple[Gauge, Counter, Summary, Summary, Histogram, Histogram]:
    """The same series as prometheus_client objects, registered in the same order."""
    return (
        Gauge("http_requests_inprogress", TEXTS.inprogress, registry=registry),
        Counter("http_requests_total", TEXTS.total, ("method", "status", "handler"), registry=registry),
        Summary("http_request_size_bytes", TEXTS.request_size, ("handler",), registry=registry),
        Summary("http_response_size_bytes", TEXTS.response_size, ("handler",), registry=registry),
        Histogram("http_request_duration_highr_seconds", TEXTS.highr, buckets=HIGHR, registry=registry),
        Histogram("http_request_duration_seconds", TEXTS.lowr, ("method", "handler"), buckets=LOWR, registry=registry),
    )


def _without_timestamps(text: str) -> str:
    text = re.sub(r"(# \{[^}]*\} \S+) \S+$", r"\1 <exemplar time>", text, flags=re.MULTILINE)
    return re.sub(r"\d\.\d+e\+09", "<created>", text)


@pytest.mark.parametrize("generate", [generate_latest, generate_openmetrics], ids=["text", "openmetrics"])
def test_same_exposition_as_prometheus_client_objects(generate: object) -> None:
    ours_registry, reference_registry = CollectorRegistry(), CollectorRegistry()
    ours = RequestMetrics("", TEXTS, HIGHR, LOWR)
    ours_registry.register(ours)
    inprogress, total, request_size, response_size, highr, lowr = _reference(reference_registry)
    ours.begin()  # one request still in progress
    inprogress.inc()
    for (handler, method, status), sent, received, duration, trace in REQUESTS:
        ours.begin()
        ours.record((handler, method, status), sent, received, duration, trace)
        exemplar = None if trace is None else {"trace_id": trace.trace_id, "span_id": trace.span_id}
        total.labels(method, status, handler).inc(exemplar=exemplar)
        request_size.labels(handler).observe(sent)
        response_size.labels(handler).observe(received)
        highr.observe(duration, exemplar)
        lowr.labels(method, handler).observe(duration, exemplar)
    exposed = _without_timestamps(generate(ours_registry).decode())  # type: ignore[operator]
    assert exposed == _without_timestamps(generate(reference_registry).decode())  # type: ignore[operator]
    assert 'http_requests_total{handler="/x",method="GET",status="2xx"} 2.0' in exposed
    if generate is generate_openmetrics:
        newest = '# {span_id="dddddddddddddddd",trace_id="cccccccccccccccccccccccccccccccc"}'
        assert f'http_requests_total{{handler="/x",method="GET",status="2xx"}} 2.0 {newest} 1.0' in exposed
        assert f'http_request_duration_seconds_bucket{{handler="/x",le="0.5",method="GET"}} 2.0 {newest} 0.1' in exposed
        assert 'http_request_duration_highr_seconds_bucket{le="1.0"} 2.0 # {span_id="bbbbbbbbbbbbbbbb"' in exposed
        assert exposed.count(" # {") == 4  # the counter, two highr buckets, one lowr bucket; none for /y/{id}
    else:
        assert " # {" not in exposed  # Prometheus' text format has no exemplars


def test_the_same_names_cannot_be_registered_twice() -> None:
    registry = CollectorRegistry()
    registry.register(RequestMetrics("", TEXTS, HIGHR, LOWR))
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Counter("http_requests_total", "again", registry=registry)


def test_concurrent_records_are_all_counted() -> None:
    registry = CollectorRegistry()
    metrics = RequestMetrics("", TEXTS, HIGHR, LOWR)
    registry.register(metrics)

    def hammer() -> None:
        for index in range(2000):
            metrics.begin()
            if index % 2:
                metrics.record(("/x", "GET", "2xx"), 1, 2, 0.3)
            else:
                metrics.end()  # not recorded (an excluded handler)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    labels = {"handler": "/x", "method": "GET", "status": "2xx"}
    assert registry.get_sample_value("http_requests_total", labels) == 4000
    assert registry.get_sample_value("http_request_size_bytes_sum", {"handler": "/x"}) == 4000
    assert registry.get_sample_value("http_request_duration_highr_seconds_count") == 4000
    assert registry.get_sample_value("http_requests_inprogress") == 0
    metrics.begin()
    assert registry.get_sample_value("http_requests_inprogress") == 1  # reading it twice does not move it
    assert registry.get_sample_value("http_requests_inprogress") == 1


def test_queued_requests_are_bounded_and_all_read_by_a_collection() -> None:
    registry = CollectorRegistry()
    metrics = RequestMetrics("", TEXTS, HIGHR, LOWR)
    registry.register(metrics)
    count = RECORD_BATCH * 3 + 7
    for _ in range(count):
        metrics.begin()
        metrics.record(("/x", "GET", "2xx"), 1, 2, 0.3)
        assert len(metrics._pending) < RECORD_BATCH  # never more than a batch waits
    assert len(metrics._pending) == 7
    labels = {"handler": "/x", "method": "GET", "status": "2xx"}
    assert registry.get_sample_value("http_requests_total", labels) == count
    assert len(metrics._pending) == 0
    assert registry.get_sample_value("http_requests_inprogress") == 0


def test_an_exemplar_keeps_the_time_of_its_request_not_of_the_collection(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = CollectorRegistry()
    metrics = RequestMetrics("", TEXTS, HIGHR, LOWR)
    registry.register(metrics)
    monkeypatch.setattr(_metrics_memory, "_time", lambda: 1_000_000.0)
    metrics.begin()
    metrics.record(("/x", "GET", "2xx"), 1, 2, 0.2, TraceContext("a" * 32, "b" * 16, True))
    monkeypatch.setattr(_metrics_memory, "_time", lambda: 2_000_000.0)
    exposed = generate_openmetrics(registry).decode()
    exemplar = '# {span_id="bbbbbbbbbbbbbbbb",trace_id="' + "a" * 32 + '"}'
    assert f'http_requests_total{{handler="/x",method="GET",status="2xx"}} 1.0 {exemplar} 1.0 1000000.0' in exposed
    bucket = 'http_request_duration_seconds_bucket{handler="/x",le="0.5",method="GET"}'
    assert f"{bucket} 1.0 {exemplar} 0.2 1000000.0" in exposed


def test_collections_while_threads_record_lose_and_double_nothing() -> None:
    registry = CollectorRegistry()
    metrics = RequestMetrics("", TEXTS, HIGHR, LOWR)
    registry.register(metrics)
    labels = {"handler": "/x", "method": "GET", "status": "2xx"}
    done = threading.Event()
    seen: list[float] = []

    def scrape() -> None:
        while not done.is_set():
            seen.append(registry.get_sample_value("http_requests_total", labels) or 0.0)

    def hammer() -> None:
        for _ in range(3000):
            metrics.begin()
            metrics.record(("/x", "GET", "2xx"), 1, 2, 0.3)

    scraper = threading.Thread(target=scrape)
    scraper.start()
    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    done.set()
    scraper.join(timeout=60)
    assert len(seen) > 1
    assert seen == sorted(seen)  # a total never goes back
    assert registry.get_sample_value("http_requests_total", labels) == 12000
    assert registry.get_sample_value("http_request_duration_highr_seconds_count") == 12000
    assert registry.get_sample_value("http_requests_inprogress") == 0
