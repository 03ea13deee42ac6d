"""Request metrics as a pure ASGI middleware: the series of prometheus-fastapi-instrumentator's defaults.

``PrometheusMiddleware`` exposes ``http_requests_total{handler,method,status}``,
``http_request_size_bytes{handler}`` and ``http_response_size_bytes{handler}`` (summaries of the
``Content-Length`` headers), ``http_request_duration_highr_seconds`` (no label, many buckets),
``http_request_duration_seconds{handler,method}`` (few buckets) and ``http_requests_inprogress`` (``livesum``
over the live workers). ``handler`` is the route template (``/items/{item_id}``, mounts included); requests
that match no route are grouped under ``none``; statuses are grouped (``2xx``).

It wraps ``send`` only: no body is read or buffered, streaming is untouched. The route template is read from
the match the router left in the scope (``route_templates``), whatever the number of routes and whether the
path was seen before; the label children of each ``(handler, method, status)`` are kept, so a request costs a
few dictionary lookups and the metric updates.
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from collections.abc import Awaitable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from c2casgiutils._metrics_memory import Help, RequestMetrics
from c2casgiutils._optional import require
from c2casgiutils.route_templates import PATH_CACHE_SIZE, RouteTemplates, Started
from c2casgiutils.tracing import exemplar_of, trace_context_var

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from c2casgiutils._metrics_exemplars import ExemplarFile
    from c2casgiutils.tracing import TraceContext

HIGHR_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5, 7.5, 10, 30, 60)
LOWR_BUCKETS = (0.1, 0.5, 1)
UNMATCHED = "none"
ROUTE_CACHE_SIZE = PATH_CACHE_SIZE  # paths whose template was found by walking the routes (see route_templates)


TOTAL_HELP = "Total number of requests by method, status and handler."
REQUEST_SIZE_HELP = (
    "Content length of incoming requests by handler. Only value of header is respected. Otherwise ignored. "
    "No percentile calculated. "
)
RESPONSE_SIZE_HELP = (
    "Content length of outgoing responses by handler. Only value of header is respected. Otherwise ignored. "
    "No percentile calculated. "
)
HIGHR_HELP = "Latency with many buckets but no API specific labels. Made for more accurate percentile calculations. "
LOWR_HELP = "Latency with only few buckets by handler. Made to be only used if aggregation by handler is important. "
INPROGRESS_HELP = "Number of HTTP requests in progress."


# Keyed by the registry itself, not its id(): the key keeps the registry alive, so a new registry can never
# be handed the values of a collected one that had the same id. Created once per process and prefix: apps and
# middleware stacks are rebuilt, the series stay.
_STORES: dict[tuple[Any, str], RequestMetrics] = {}
_GAUGES: dict[tuple[Any, str], Any] = {}
_LOCK = threading.Lock()
_perf_counter = time.perf_counter
_HELP = Help(TOTAL_HELP, REQUEST_SIZE_HELP, RESPONSE_SIZE_HELP, HIGHR_HELP, LOWR_HELP, INPROGRESS_HELP)


def _registry(registry: Any) -> Any:
    client = require("prometheus_client", "prometheus", "PrometheusMiddleware")
    return client.REGISTRY if registry is None else registry


def _inprogress_gauge(registry: Any, prefix: str) -> Any:
    """The in-progress gauge of multiprocess mode, once per registry and prefix; ``livesum``: over live workers."""
    client = require("prometheus_client", "prometheus", "PrometheusMiddleware")
    registry = _registry(registry)
    with _LOCK:
        key = (registry, prefix)
        if key not in _GAUGES:
            _GAUGES[key] = client.Gauge(
                f"{prefix}http_requests_inprogress", INPROGRESS_HELP, multiprocess_mode="livesum", registry=registry
            )
        return _GAUGES[key]


def _memory_store(registry: Any, prefix: str, highr: Sequence[float], lowr: Sequence[float]) -> RequestMetrics:
    """The values of one process, registered in ``registry`` once per process and prefix."""
    registry = _registry(registry)
    key = (registry, prefix)
    with _LOCK:
        found = _STORES.get(key)
        if found is None:
            found = RequestMetrics(prefix, _HELP, highr, lowr)
            registry.register(found)
            _STORES[key] = found
        return found


class _Slot:
    """One value of this process in a multiprocess file: kept in memory, written through at each change."""

    __slots__ = ("file", "key", "value")

    def __init__(self, file: Any, key: str) -> None:
        self.file = file
        self.key = key
        self.value: float = file.read_value(key)[0]

    def add(self, amount: float) -> None:
        self.value += amount
        self.file.write_value(self.key, self.value, 0.0)


class _Histogram(NamedTuple):
    total: _Slot
    bounds: tuple[float, ...]
    buckets: tuple[_Slot, ...]

    def observe(self, amount: float) -> int:
        """Count ``amount``; the index of its bucket."""
        self.total.add(amount)
        index = bisect.bisect_left(self.bounds, amount)
        self.buckets[index].add(1.0)
        return index


class _Children(NamedTuple):
    total: _Slot
    request_count: _Slot
    request_sum: _Slot
    response_count: _Slot
    response_sum: _Slot
    lowr: _Histogram


class _MmapRecorder:
    """Records straight into files of its own in the multiprocess directory, one lock per request.

    prometheus_client's multiprocess values take a lock, check the pid and write the file for each of the
    ~10 values a request changes; here the same files are written (``<type>_http_<pid>.db``, the format of
    prometheus_client's, read and summed by its collector) under one lock. The files are reopened after a fork.
    """

    def __init__(
        self, directory: str, prefix: str, highr: Sequence[float], lowr: Sequence[float], inprogress: Any
    ) -> None:
        self._inprogress = inprogress  # prometheus_client's livesum gauge: dead workers leave the sum
        self.begin = inprogress.inc
        self.end = inprogress.dec
        self._directory = directory
        self._prefix = prefix
        self._highr_bounds = tuple(float(bound) for bound in highr)
        self._lowr_bounds = tuple(float(bound) for bound in lowr)
        self._lock = threading.Lock()
        self._pid = -1
        self._files: dict[str, Any] = {}
        self._children: dict[tuple[str, str, str], _Children] = {}
        self._highr: _Histogram | None = None
        self._exemplars: ExemplarFile | None = None
        self._exemplar_series: dict[tuple[str, tuple[tuple[str, str], ...]], int | None] = {}
        self._exemplar_slots: dict[tuple[Any, ...], tuple[int | None, int | None, int | None]] = {}

    def _open(self) -> None:
        for file in self._files.values():
            file.close()
        self._files.clear()
        self._children.clear()
        if self._exemplars is not None:
            self._exemplars.close()
            self._exemplars = None
        self._exemplar_series.clear()
        self._exemplar_slots.clear()
        self._pid = os.getpid()
        self._highr = self._histogram(
            f"{self._prefix}http_request_duration_highr_seconds", HIGHR_HELP, {}, self._highr_bounds
        )

    def _slot(self, typ: str, metric: str, name: str, labels: dict[str, str], help_text: str) -> _Slot:
        from prometheus_client.mmap_dict import MmapedDict, mmap_key  # noqa: PLC0415

        file = self._files.get(typ)
        if file is None:
            path = os.path.join(self._directory, f"{typ}_http_{self._pid}.db")
            file = self._files[typ] = MmapedDict(path)  # type: ignore[no-untyped-call]
        return _Slot(file, mmap_key(metric, name, list(labels), list(labels.values()), help_text))

    def _histogram(self, metric: str, help_text: str, labels: dict[str, str], bounds: tuple[float, ...]) -> _Histogram:
        from prometheus_client.utils import floatToGoString  # noqa: PLC0415

        buckets = []
        for bound in bounds:
            le: str = floatToGoString(bound)  # type: ignore[no-untyped-call]
            buckets.append(self._slot("histogram", metric, f"{metric}_bucket", {**labels, "le": le}, help_text))
        return _Histogram(self._slot("histogram", metric, f"{metric}_sum", labels, help_text), bounds, tuple(buckets))

    def _label_children(self, handler: str, method: str, status: str) -> _Children:
        prefix = self._prefix
        total = f"{prefix}http_requests"
        request_size = f"{prefix}http_request_size_bytes"
        response_size = f"{prefix}http_response_size_bytes"
        lowr = f"{prefix}http_request_duration_seconds"
        return _Children(
            self._slot(
                "counter",
                total,
                f"{total}_total",
                {"method": method, "status": status, "handler": handler},
                TOTAL_HELP,
            ),
            self._slot("summary", request_size, f"{request_size}_count", {"handler": handler}, REQUEST_SIZE_HELP),
            self._slot("summary", request_size, f"{request_size}_sum", {"handler": handler}, REQUEST_SIZE_HELP),
            self._slot("summary", response_size, f"{response_size}_count", {"handler": handler}, RESPONSE_SIZE_HELP),
            self._slot("summary", response_size, f"{response_size}_sum", {"handler": handler}, RESPONSE_SIZE_HELP),
            self._histogram(lowr, LOWR_HELP, {"method": method, "handler": handler}, self._lowr_bounds),
        )

    def record(
        self,
        key: tuple[str, str, str],
        request_size: int,
        response_size: int,
        duration: float,
        exemplar: TraceContext | None = None,
    ) -> None:
        """One request ended (begun with ``begin``): ``key`` is (handler, method, status); ``exemplar``: its sampled
        trace, if any."""
        self._inprogress.dec()
        with self._lock:
            if self._pid != os.getpid():
                self._open()
            children = self._children.get(key)
            if children is None:
                children = self._children[key] = self._label_children(*key)
            children.total.add(1.0)
            children.request_count.add(1.0)
            if request_size:
                children.request_sum.add(request_size)
            children.response_count.add(1.0)
            if response_size:
                children.response_sum.add(response_size)
            highr_bucket = self._highr.observe(duration) if self._highr is not None else -1
            lowr_bucket = children.lowr.observe(duration)
            if exemplar is not None and highr_bucket >= 0:
                self._record_exemplar(key, highr_bucket, lowr_bucket, duration, exemplar)

    def _record_exemplar(
        self, key: tuple[str, str, str], highr_bucket: int, lowr_bucket: int, duration: float, exemplar: TraceContext
    ) -> None:
        """The request's trace as the newest exemplar of its counter and of its two duration buckets."""
        slots = self._exemplar_slots.get((key, highr_bucket, lowr_bucket))
        if slots is None:
            slots = self._exemplar_slots[(key, highr_bucket, lowr_bucket)] = self._allocate_exemplars(
                key, highr_bucket, lowr_bucket
            )
        exemplars = self._exemplars
        assert exemplars is not None
        trace_id, span_id = bytes.fromhex(exemplar.trace_id), bytes.fromhex(exemplar.span_id)
        now = time.time()
        total, lowr, highr = slots
        if total is not None:
            exemplars.write(total, 1.0, now, trace_id, span_id)
        if lowr is not None:
            exemplars.write(lowr, duration, now, trace_id, span_id)
        if highr is not None:
            exemplars.write(highr, duration, now, trace_id, span_id)

    def _allocate_exemplars(
        self, key: tuple[str, str, str], highr_bucket: int, lowr_bucket: int
    ) -> tuple[int | None, int | None, int | None]:
        """The exemplar slots of the series a request counts in: its counter and its two duration buckets."""
        from prometheus_client.utils import floatToGoString  # noqa: PLC0415

        from c2casgiutils._metrics_exemplars import ExemplarFile  # noqa: PLC0415

        if self._exemplars is None:
            self._exemplars = ExemplarFile(self._directory)
        handler, method, status = key
        prefix = self._prefix
        lowr_le: str = floatToGoString(self._lowr_bounds[lowr_bucket])  # type: ignore[no-untyped-call]
        highr_le: str = floatToGoString(self._highr_bounds[highr_bucket])  # type: ignore[no-untyped-call]
        slots = []
        for name, labels in (
            (f"{prefix}http_requests_total", {"method": method, "status": status, "handler": handler}),
            (f"{prefix}http_request_duration_seconds_bucket", {"method": method, "handler": handler, "le": lowr_le}),
            (f"{prefix}http_request_duration_highr_seconds_bucket", {"le": highr_le}),
        ):
            series = (name, tuple(sorted(labels.items())))
            if series not in self._exemplar_series:  # a bucket's series is shared by the statuses of a handler
                self._exemplar_series[series] = self._exemplars.allocate(name, labels)
            slots.append(self._exemplar_series[series])
        return slots[0], slots[1], slots[2]


def _recorder(
    registry: Any, prefix: str, highr: Sequence[float], lowr: Sequence[float]
) -> RequestMetrics | _MmapRecorder:
    """Files of our own when prometheus_client runs in multiprocess mode, else values in memory (served by a
    collector of their own). Both count a request in progress from ``begin()`` to ``record(...)`` (or ``end()``
    when it is not recorded)."""
    values = require("prometheus_client.values", "prometheus", "PrometheusMiddleware")
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    highr = tuple(highr) if highr[-1] == float("inf") else (*highr, float("inf"))
    lowr = tuple(lowr) if lowr[-1] == float("inf") else (*lowr, float("inf"))
    if getattr(values.ValueClass, "_multiprocess", False) and directory:
        return _MmapRecorder(directory, prefix, highr, lowr, _inprogress_gauge(registry, prefix))
    return _memory_store(registry, prefix, highr, lowr)


class PrometheusMiddleware:
    """Request metrics with the names and labels of prometheus-fastapi-instrumentator's defaults.

    ``app.add_middleware(PrometheusMiddleware)`` replaces
    ``Instrumentator(should_instrument_requests_inprogress=True).instrument(app)``; the metrics are served by
    :func:`c2casgiutils.prometheus.start_metrics_server`. ``excluded_handlers``: route templates not counted;
    ``prefix``: prepended to every metric name; ``registry``: where the collectors are registered in one process
    (in multiprocess mode the values go to the multiprocess directory).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        registry: Any = None,
        prefix: str = "",
        excluded_handlers: Iterable[str] = (),
        group_status_codes: bool = True,
        latency_highr_buckets: Sequence[float] = HIGHR_BUCKETS,
        latency_lowr_buckets: Sequence[float] = LOWR_BUCKETS,
    ) -> None:
        self.app = app
        self.excluded = frozenset(excluded_handlers)
        self.group_status_codes = group_status_codes
        self._recorder = _recorder(registry, prefix, latency_highr_buckets, latency_lowr_buckets)
        self._templates = RouteTemplates(app, cache_size=ROUTE_CACHE_SIZE)
        self._statuses: dict[int, str] = {}

    @property
    def _handlers(self) -> dict[Any, str | None]:
        """The bounded cache of the paths whose template was found by walking the routes."""
        return self._templates.walked

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = _perf_counter()
        templates = self._templates
        started = templates.noted(scope)
        # An excluded route is not even counted in progress: known before the router runs only by a walk
        # (literal prefixes first, bounded cache), done only when there are excluded handlers.
        if self.excluded and (templates.walk_path(scope, Started(*started)) or UNMATCHED) in self.excluded:
            await self.app(scope, receive, send)
            return
        status = 500
        response_size = 0

        # A plain function returning send's awaitable: one coroutine less per message than an ``async def``.
        def send_wrapper(message: Message) -> Awaitable[None]:
            nonlocal status, response_size
            if message["type"] == "http.response.start":
                status = int(message["status"])
                for name, value in message.get("headers", ()):
                    if name == b"content-length" or name.lower() == b"content-length":
                        response_size = _int(value)
                        break
            return send(message)

        recorder = self._recorder
        recorder.begin()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            duration = _perf_counter() - start
            handler = templates.template(scope, started, status) or UNMATCHED
            status_label = self._statuses.get(status)
            if status_label is None:
                status_label = self._statuses[status] = (
                    f"{str(status)[0]}xx" if self.group_status_codes else str(status)
                )
            if handler in self.excluded:
                recorder.end()
            else:
                request_size = 0
                for name, value in scope.get("headers", ()):
                    if name == b"content-length":
                        request_size = _int(value)
                        break
                # The sampled trace of the request as exemplar: from the contextvar, inline (exemplar_of's first look).
                context = trace_context_var.get()
                exemplar = (context if context.sampled else None) if context is not None else exemplar_of(scope)
                recorder.record(
                    (handler, scope["method"], status_label), request_size, response_size, duration, exemplar
                )


def _int(value: bytes) -> int:
    try:
        return int(value)
    except ValueError:
        return 0
