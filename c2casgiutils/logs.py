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
``?secret=`` (or any credential-like query parameter) never reaches the access log in clear.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from c2casgiutils._sensitive import mask_path_with_query
from c2casgiutils.request_id import RequestIdFilter, request_id_var
from c2casgiutils.tracing import log_ids

__all__ = ["JsonFormatter", "QuerySecretsFilter", "RequestIdFilter", "mask_access_log_secrets"]

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
        request_id = getattr(record, "request_id", None)
        if request_id is None:
            request_id = request_id_var.get()
        trace_id = getattr(record, "trace_id", None)
        span_id = getattr(record, "span_id", None)
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
        for key, value in vars(record).items():
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
