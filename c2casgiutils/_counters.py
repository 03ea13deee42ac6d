"""Prometheus counters of the package, each created once per name; counting never fails the caller."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from c2casgiutils._optional import MissingExtraError, require

_LOGGER = logging.getLogger(__name__)
_COUNTERS: dict[str, Any] = {}
_LOCK = threading.Lock()


def _counter(name: str, help_text: str, label_names: tuple[str, ...]) -> Any:
    """The counter ``name`` (created on first use: a name is registered once per process), or None."""
    with _LOCK:
        if name not in _COUNTERS:
            try:
                client = require("prometheus_client", "prometheus", "The metrics of the package")
                _COUNTERS[name] = client.Counter(name, help_text, label_names)
            except MissingExtraError:
                _COUNTERS[name] = None
            except ValueError:  # the name is taken by another collector of the process
                _LOGGER.warning("The metric %s clashes with another metric: not exported", name)
                _COUNTERS[name] = None
        return _COUNTERS[name]


def increment(name: str, help_text: str, labels: Mapping[str, str] | None = None) -> None:
    """Add one to the counter ``name`` in the default registry (summed over the workers in multiprocess mode).

    Never raises: without prometheus_client, or with the name taken by another collector, nothing is counted
    (metrics are best effort; what is counted, such as an audit record, matters more).
    """
    try:
        found = _counter(name, help_text, tuple(labels or ()))
        if found is not None:
            (found.labels(**labels) if labels else found).inc()
    except Exception:
        _LOGGER.warning("Cannot count %s %s", name, dict(labels or {}), exc_info=True)
