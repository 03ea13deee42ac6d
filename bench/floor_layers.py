"""Floors of our layers: the least each one must do for the benchmark's request, hard-coded for it.

Each floor does the work its layer is required to do on ``GET /api/hello`` from the trusted proxy, with none
of the generality: no settings, no mounts, no caches, no checks of what this request never has. What a layer
costs above its floor is the price of that generality; what the floors cost together is the least any
implementation of the same six layers can cost, written in Python as separate ASGI layers.

- ``metrics:floor``: times the request, counts it in progress, reads the status and the request's and
  response's ``Content-Length``, takes the route's path as the template and the trace as exemplar, and queues
  the values, added to a counter, two histograms and two size summaries 256 requests at a time;
- ``forwarded:floor``: from a trusted client, one scan of the request headers for ``X-Forwarded-For``, ``-Proto``
  and ``-Host``; the client, the scheme, the server and the ``Host`` header rewritten in a copy of the scope;
- ``request_id:floor``: the caller's ``X-Request-ID`` or one from a pool of random ids, in the state and a
  contextvar, returned in the response; new trace and span ids from pools in a contextvar;
- ``armor:floor`` (in ``bench_stack``): the 11 default headers appended as a constant list.

The error handler and ``DrainMiddleware`` are already at their floor: a ``send`` wrapper noting one thing.
"""

from __future__ import annotations

import bisect
import collections
import contextvars
import time
from typing import Any

from c2casgiutils._metrics_http import HIGHR_BUCKETS, LOWR_BUCKETS
from c2casgiutils.request_id import new_request_id
from c2casgiutils.tracing import new_span_id, new_trace_id

trace_var: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("floor_trace", default=None)
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("floor_request_id", default=None)

_BATCH = 256
_HIGHR = (*HIGHR_BUCKETS, float("inf"))
_LOWR = (*LOWR_BUCKETS, float("inf"))


class FloorMetrics:
    """The request metrics' required work, hard-coded (see the module's docstring)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.in_progress = 0
        self.pending: collections.deque[tuple[Any, ...]] = collections.deque()
        self.totals: dict[tuple[str, str, int], int] = {}
        self.lowr: dict[tuple[str, str], list[float]] = {}
        self.highr = [0.0] * (len(_HIGHR) + 1)
        self.sizes: dict[str, list[int]] = {}
        self.exemplars: dict[tuple[str, int], tuple[str, float, float]] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        response_size = 0

        def send_wrapper(message: Any) -> Any:
            nonlocal status, response_size
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message["headers"]:
                    if name == b"content-length":
                        response_size = int(value)
                        break
            return send(message)

        self.in_progress += 1
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.in_progress -= 1
            route = scope.get("route")
            request_size = 0
            for name, value in scope["headers"]:
                if name == b"content-length":
                    request_size = int(value)
                    break
            trace = trace_var.get()
            duration = time.perf_counter() - start
            pending = self.pending
            pending.append(
                (route.path if route else "none", scope["method"], status, request_size, response_size, duration, trace)
            )
            if len(pending) >= _BATCH:
                self._add_pending()

    def _add_pending(self) -> None:
        pending = self.pending
        for _ in range(len(pending)):
            handler, method, status, request_size, response_size, duration, trace = pending.popleft()
            key = (handler, method, status)
            self.totals[key] = self.totals.get(key, 0) + 1
            lowr = self.lowr.get((handler, method))
            if lowr is None:
                lowr = self.lowr[handler, method] = [0.0] * (len(_LOWR) + 1)
            bucket = bisect.bisect_left(_LOWR, duration)
            lowr[bucket] += 1
            lowr[-1] += duration
            self.highr[bisect.bisect_left(_HIGHR, duration)] += 1
            self.highr[-1] += duration
            sizes = self.sizes.setdefault(handler, [0, 0, 0])
            sizes[0] += 1  # count, request sizes, response sizes: the two summaries (one count)
            sizes[1] += request_size
            sizes[2] += response_size
            if trace is not None:
                self.exemplars[handler, bucket] = (trace[0], duration, time.time())


class FloorForwarded:
    """The forwarded headers' required work for this request, hard-coded (see the module's docstring)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.trusted = frozenset(("127.0.0.1",))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        client = scope.get("client")
        if scope["type"] == "http" and client and client[0] in self.trusted:
            forwarded_for = proto = host = None
            for name, value in scope["headers"]:
                if name == b"x-forwarded-for":
                    forwarded_for = value
                elif name == b"x-forwarded-proto":
                    proto = value
                elif name == b"x-forwarded-host":
                    host = value
            scope = dict(scope)
            if forwarded_for is not None:
                scope["client"] = (forwarded_for.decode("latin-1").rsplit(",", 1)[-1].strip(), 0)
            if proto is not None:
                scope["scheme"] = proto.decode("latin-1")
            if host is not None:
                scope["headers"] = [(name, host if name == b"host" else value) for name, value in scope["headers"]]
                scope["server"] = (host.decode("latin-1"), 443 if scope["scheme"] == "https" else 80)
        await self.app(scope, receive, send)


class FloorRequestId:
    """Request id and W3C trace context for this request, hard-coded (see the module's docstring)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value.decode("ascii")
        if request_id is None:
            request_id = new_request_id()
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state["request_id"] = request_id
        header = (b"x-request-id", request_id.encode("ascii"))

        def send_with_id(message: Any) -> Any:
            if message["type"] == "http.response.start":
                message["headers"] = [*message["headers"], header]
            return send(message)

        token = request_id_var.set(request_id)
        trace_token = trace_var.set((new_trace_id(), new_span_id()))
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            trace_var.reset(trace_token)
            request_id_var.reset(token)
