"""JSON logs for production: one JSON object per line, with the request id and the trace ids.

Use it from a logging configuration (for uvicorn ``--log-config``); the formatter alone is enough::

    formatters:
      json: {"()": c2casgiutils.logs.JsonFormatter}
    handlers:
      console:
        class: logging.StreamHandler
        formatter: json

:class:`RequestIdFilter` puts the same fields on the records for text formats (``%(trace_id)s``).

:func:`c2casgiutils.startup` also puts :class:`QuerySecretsFilter` on uvicorn's access logger, so that a
``?secret=`` (or any credential-like query parameter) never reaches the access log in clear, and a
:class:`SkipPathsFilter` with ``C2C__ACCESS_LOG__SKIP_PATHS``, so that probes do not flood it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from c2casgiutils._sensitive import mask_path_with_query
from c2casgiutils.request_id import RequestIdFilter, request_id_var
from c2casgiutils.tracing import log_ids

__all__ = [
    "JsonFormatter",
    "QuerySecretsFilter",
    "RequestIdFilter",
    "SkipPathsFilter",
    "mask_access_log_secrets",
    "skip_access_log_paths",
]

ACCESS_LOGGER = "uvicorn.access"

# Attributes every LogRecord has: anything else was passed with ``extra=`` and is added to the line.
_STANDARD_ATTRIBUTES = frozenset(
    {
        *vars(logging.LogRecord("", 0, "", 0, "", (), None)),
        "message",
        "asctime",
        "request_id",
        "trace_id",
        "span_id",
        "taskName",
        "color_message",  # uvicorn duplicates its messages with ANSI colours
    }
)


def _jsonable(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return repr(value)


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object: time, level, logger, message, request_id, trace_id, span_id, extras.

    ``exception`` holds the formatted traceback when there is one; values given with ``extra=`` are added
    as keys (non JSON values as their repr). The ids come from the record (set by :class:`RequestIdFilter`)
    or from the current request context: ``trace_id`` (32 hex) and ``span_id`` (16 hex) are the request's
    trace and this service's span for it, null outside a request.
    """

    def format(self, record: logging.LogRecord) -> str:
        # The record's own fields (set by RequestIdFilter or extra=), read from its dict: a getattr() that misses
        # raises and catches an AttributeError, which cost more than the rest of the ids together.
        fields = vars(record)
        request_id = fields.get("request_id")
        if request_id is None:
            request_id = request_id_var.get()
        trace_id = fields.get("trace_id")
        span_id = fields.get("span_id")
        if trace_id is None:
            trace_id, span_id = log_ids()
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": request_id,
            "trace_id": trace_id,
            "span_id": span_id,
        }
        for key, value in fields.items():
            if key not in _STANDARD_ATTRIBUTES and key not in entry:
                entry[key] = _jsonable(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # One line per record: json.dumps escapes the newlines of messages and tracebacks.
        return json.dumps(entry, ensure_ascii=False, default=repr)


class QuerySecretsFilter(logging.Filter):
    """Mask credential-like query parameters (``?secret=``, ``?access_token=``) in a record's string arguments.

    uvicorn's access log line carries the path with its query string as an argument: the secret of the
    (discouraged) ``?secret=`` login would otherwise be written in clear.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(arg, str) and "?" in arg for arg in record.args):
            record.args = tuple(
                mask_path_with_query(arg) if isinstance(arg, str) and "?" in arg else arg for arg in record.args
            )
        return True


def mask_access_log_secrets() -> None:
    """Put :class:`QuerySecretsFilter` on uvicorn's access logger (once)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(existing, QuerySecretsFilter) for existing in logger.filters):
        logger.addFilter(QuerySecretsFilter())


class SkipPathsFilter(logging.Filter):
    """Leave the successful (2xx) requests to some paths out of uvicorn's access log (probes every few seconds).

    An entry with a query string (``/c2c/health_checks?tags=liveness``) matches that exact target; one without
    matches the path with any query. Failures (non-2xx) on those paths are still logged.
    """

    def __init__(self, paths: Iterable[str]) -> None:
        super().__init__()
        paths = list(paths)
        self.exact = frozenset(path for path in paths if "?" in path)
        self.any_query = frozenset(path for path in paths if "?" not in path)

    def filter(self, record: logging.LogRecord) -> bool:
        # uvicorn's access line: (client, method, path with query, HTTP version, status).
        args = record.args
        if not isinstance(args, tuple) or len(args) < 5:
            return True
        target, status = args[2], args[4]
        if not isinstance(target, str) or not isinstance(status, int) or not 200 <= status < 300:
            return True
        return target not in self.exact and target.partition("?")[0] not in self.any_query


def skip_access_log_paths(paths: Iterable[str]) -> None:
    """Put a :class:`SkipPathsFilter` of ``paths`` on uvicorn's access logger, replacing an earlier one (none:
    every request is logged)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    for existing in [existing for existing in logger.filters if isinstance(existing, SkipPathsFilter)]:
        logger.removeFilter(existing)
    paths = list(paths)
    if paths:
        logger.addFilter(SkipPathsFilter(paths))
