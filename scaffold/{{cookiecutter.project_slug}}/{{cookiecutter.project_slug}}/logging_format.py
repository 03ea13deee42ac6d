"""The log formatter of logging.yaml: text for people, JSON (one object per line) for log collectors.

``{{ cookiecutter.project_slug | upper }}__LOG_FORMAT=json`` switches to c2casgiutils' JSON formatter, which adds the request id and the
trace ids (``trace_id``, ``span_id``); the text format shows the request id and the trace id.
"""

import logging

from c2casgiutils.logs import JsonFormatter

from {{ cookiecutter.project_slug }}.config import settings

TEXT_FORMAT = "%(asctime)s %(levelname)-8s %(name)s [%(request_id)s %(trace_id)s] %(message)s"


def console_formatter() -> logging.Formatter:
    """Build the formatter chosen by the settings (called by ``logging.config.dictConfig``)."""
    if settings.log_format == "json":
        return JsonFormatter()
    return logging.Formatter(TEXT_FORMAT)
