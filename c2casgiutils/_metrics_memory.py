"""Request metrics of one process, kept in memory and served by a collector of their own.

prometheus_client's metric objects take a lock and check that they are observable for each of the ~10 values
a request changes (about 3.3 µs a request with the instrumentator's default series); here a request only queues
its values, which are added in batches under one lock, and always before a collection reads them. The collector
yields the samples prometheus_client's Counter, Summary, Histogram and Gauge would (names, label order,
``_created`` series, cumulative buckets, the newest exemplar of the counter and of each bucket), so the
exposition is the same. An exemplar is kept as the request's trace context, made into prometheus_client's
exemplar only when collected: a request pays a tuple, not the label dict.
"""

from __future__ import annotations

import bisect
import collections
import functools
import itertools
import threading
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from c2casgiutils.tracing import TraceContext

# The newest exemplar of a counter or a bucket: (trace context, observed value, time.time()).
_Exemplar = tuple["TraceContext", float, float]


_time = time.time
# Ended requests queued before they are added to the values (a collection adds them whatever their number).
RECORD_BATCH = 256


class Help(NamedTuple):
    """The help texts of the series."""

    total: str
    request_size: str
    response_size: str
    highr: str
    lowr: str
    inprogress: str


class _Histogram:
    __slots__ = ("counts", "created", "exemplars", "sum")

    def __init__(self, buckets: int) -> None:
        self.counts = [0.0] * buckets
        self.sum = 0.0
        self.created = time.time()
        self.exemplars: list[_Exemplar | None] = [None] * buckets


class _Summary:
    __slots__ = ("count", "created", "sum")

    def __init__(self) -> None:
        self.count = 0.0
        self.sum = 0.0
        self.created = time.time()


class _Counter:
    __slots__ = ("created", "exemplar", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()
        self.exemplar: _Exemplar | None = None


class _Children(NamedTuple):
    total: _Counter
    request_size: _Summary
    response_size: _Summary
    lowr: _Histogram


class RequestMetrics:
    """The values of the request series of one registry and prefix, and their collector."""

    def __init__(self, prefix: str, texts: Help, highr: Sequence[float], lowr: Sequence[float]) -> None:
        from prometheus_client.utils import floatToGoString  # noqa: PLC0415

        self._prefix = prefix
        self._help = texts
        self._lock = threading.Lock()
        self._highr_bounds = tuple(float(bound) for bound in highr)  # ends with +Inf
        self._lowr_bounds = tuple(float(bound) for bound in lowr)
        self._highr_le = [floatToGoString(bound) for bound in self._highr_bounds]  # type: ignore[no-untyped-call]
        self._lowr_le = [floatToGoString(bound) for bound in self._lowr_bounds]  # type: ignore[no-untyped-call]
        # In progress = begun - ended. ``next()`` on a count is atomic and takes no lock: ``begin`` costs one C call;
        # the ends are counted under the lock that ``record`` takes anyway.
        self._begun = itertools.count()
        self.begin: Any = functools.partial(next, self._begun)
        self._begun_reads = 0  # the next() calls made by collections to read the count
        self._ended = 0
        self._totals: dict[tuple[str, str, str], _Counter] = {}
        self._request_sizes: dict[str, _Summary] = {}
        self._response_sizes: dict[str, _Summary] = {}
        self._lowr: dict[tuple[str, str], _Histogram] = {}
        self._highr = _Histogram(len(self._highr_bounds))
        self._children: dict[tuple[str, str, str], _Children] = {}
        # Ended requests not yet added to the values: (key, request size, response size, duration, exemplar, time).
        self._pending: collections.deque[
            tuple[tuple[str, str, str], int, int, float, TraceContext | None, float]
        ] = collections.deque()

    def _label_children(self, key: tuple[str, str, str]) -> _Children:
        handler, method, status = key  # the lock is held
        total = self._totals.setdefault((method, status, handler), _Counter())
        request_size = self._request_sizes.setdefault(handler, _Summary())
        response_size = self._response_sizes.setdefault(handler, _Summary())
        lowr = self._lowr.setdefault((method, handler), _Histogram(len(self._lowr_bounds)))
        children = self._children[key] = _Children(total, request_size, response_size, lowr)
        return children

    def end(self) -> None:
        """A request that ``begin`` counted ended without being recorded (an excluded handler)."""
        with self._lock:
            self._ended += 1

    def record(
        self,
        key: tuple[str, str, str],
        request_size: int,
        response_size: int,
        duration: float,
        exemplar: TraceContext | None = None,
    ) -> None:
        """One request ended (begun with ``begin``): ``key`` is (handler, method, status); ``exemplar``: its sampled
        trace, if any (the newest exemplar of its counter and of its two duration buckets).

        Queued, and added to the values by the next collection or once ``RECORD_BATCH`` requests are queued: a
        request pays an append, the bisects and the lock are paid once per batch, in a loop that stays warm.
        """
        pending = self._pending
        pending.append((key, request_size, response_size, duration, exemplar, 0.0 if exemplar is None else _time()))
        if len(pending) >= RECORD_BATCH:
            with self._lock:
                self._add_pending()

    def _add_pending(self) -> None:
        """Add the queued requests to the values; the lock is held. Requests queued meanwhile by other threads
        wait for the next time (``deque`` appends and pops are atomic)."""
        pending = self._pending
        popleft = pending.popleft
        children_of = self._children
        highr = self._highr
        highr_bounds = self._highr_bounds
        lowr_bounds = self._lowr_bounds
        bisect_left = bisect.bisect_left
        for _ in range(len(pending)):
            key, request_size, response_size, duration, exemplar, now = popleft()
            children = children_of.get(key) or self._label_children(key)
            highr_bucket = bisect_left(highr_bounds, duration)
            lowr_bucket = bisect_left(lowr_bounds, duration)
            self._ended += 1
            children.total.value += 1.0
            summary = children.request_size
            summary.count += 1.0
            summary.sum += request_size
            summary = children.response_size
            summary.count += 1.0
            summary.sum += response_size
            highr.counts[highr_bucket] += 1.0
            highr.sum += duration
            lowr = children.lowr
            lowr.counts[lowr_bucket] += 1.0
            lowr.sum += duration
            if exemplar is not None:
                counted: _Exemplar = (exemplar, 1.0, now)
                observed: _Exemplar = (exemplar, duration, now)
                children.total.exemplar = counted
                highr.exemplars[highr_bucket] = observed
                lowr.exemplars[lowr_bucket] = observed

    def describe(self) -> list[Any]:
        """The families without samples: what the registry checks for duplicate names."""
        return list(self._families(with_samples=False))

    def collect(self) -> list[Any]:
        with self._lock:
            self._add_pending()
            return list(self._families(with_samples=True))

    def _in_progress(self) -> float:
        """Begun minus ended (under the lock: collections are serialised)."""
        begun = next(self._begun) - self._begun_reads
        self._begun_reads += 1
        return float(begun - self._ended)

    def _families(self, with_samples: bool) -> Iterator[Any]:
        from prometheus_client import metrics  # noqa: PLC0415
        from prometheus_client.metrics_core import Metric  # noqa: PLC0415

        created = getattr(metrics, "_use_created", True)  # PROMETHEUS_DISABLE_CREATED_SERIES
        prefix = self._prefix
        texts = self._help
        inprogress = Metric(f"{prefix}http_requests_inprogress", texts.inprogress, "gauge")
        total = Metric(f"{prefix}http_requests", texts.total, "counter")
        request_size = Metric(f"{prefix}http_request_size_bytes", texts.request_size, "summary")
        response_size = Metric(f"{prefix}http_response_size_bytes", texts.response_size, "summary")
        highr = Metric(f"{prefix}http_request_duration_highr_seconds", texts.highr, "histogram")
        lowr = Metric(f"{prefix}http_request_duration_seconds", texts.lowr, "histogram")
        if with_samples:
            inprogress.add_sample(inprogress.name, {}, self._in_progress())
            for (method, status, handler), counter in self._totals.items():
                labels = {"method": method, "status": status, "handler": handler}
                exemplar = _client_exemplar(counter.exemplar)
                total.add_sample(f"{total.name}_total", labels, counter.value, exemplar=exemplar)
                if created:
                    total.add_sample(f"{total.name}_created", labels, counter.created)
            for family, summaries in ((request_size, self._request_sizes), (response_size, self._response_sizes)):
                for handler, summary in summaries.items():
                    labels = {"handler": handler}
                    family.add_sample(f"{family.name}_count", labels, summary.count)
                    family.add_sample(f"{family.name}_sum", labels, summary.sum)
                    if created:
                        family.add_sample(f"{family.name}_created", labels, summary.created)
            _add_histogram(highr, {}, self._highr, self._highr_le, created)
            for (method, handler), histogram in self._lowr.items():
                _add_histogram(lowr, {"method": method, "handler": handler}, histogram, self._lowr_le, created)
        yield from (inprogress, total, request_size, response_size, highr, lowr)


def _client_exemplar(exemplar: _Exemplar | None) -> Any:
    """prometheus_client's exemplar of a kept one (served in the OpenMetrics format only), None for none."""
    if exemplar is None:
        return None
    from prometheus_client.samples import Exemplar  # noqa: PLC0415

    context, value, timestamp = exemplar
    return Exemplar({"trace_id": context.trace_id, "span_id": context.span_id}, value, timestamp)


def _add_histogram(family: Any, labels: dict[str, str], histogram: _Histogram, les: list[str], created: bool) -> None:
    """The samples of one histogram child, as prometheus_client's Histogram gives them (cumulative buckets)."""
    cumulative = 0.0
    for le, count, exemplar in zip(les, histogram.counts, histogram.exemplars, strict=True):
        cumulative += count
        bucket_labels = {**labels, "le": le}
        family.add_sample(f"{family.name}_bucket", bucket_labels, cumulative, exemplar=_client_exemplar(exemplar))
    family.add_sample(f"{family.name}_count", labels, cumulative)
    family.add_sample(f"{family.name}_sum", labels, histogram.sum)
    if created:
        family.add_sample(f"{family.name}_created", labels, histogram.created)
