"""A logging filter for the fleet's uvicorn processes: the pid of the writing process on each record."""

from __future__ import annotations

import logging
import os


class PidFilter(logging.Filter):
    """Put ``pid`` on each record (a key of the JSON line): which worker wrote it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.pid = os.getpid()
        return True
