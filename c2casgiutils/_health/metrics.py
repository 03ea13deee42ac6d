"""Prometheus metrics of the health checks (skipped silently when prometheus_client is not installed).

The metrics are registered once per process and metric prefix: checks are created many times (tests,
several factories) but a collector name can be registered only once in a prometheus_client registry.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, NamedTuple

from c2casgiutils import config
from c2casgiutils._optional import MissingExtraError, require

if TYPE_CHECKING:
    import prometheus_client

_LOGGER = logging.getLogger(__name__)

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class HealthMetrics(NamedTuple):
    """The collectors of one prefix."""

    failure: prometheus_client.Gauge
    duration: prometheus_client.Histogram


_BY_PREFIX: dict[str, HealthMetrics | None] = {}
_LOCK = threading.Lock()


def _registered(client: Any, name: str) -> Any:
    """The collector already registered under ``name`` in the default registry, if any."""
    names_to_collectors = getattr(client.REGISTRY, "_names_to_collectors", {})
    return names_to_collectors.get(name)


def _create(prefix: str) -> HealthMetrics | None:
    try:
        client = require("prometheus_client", "prometheus", "Health check metrics")
    except MissingExtraError:
        return None
    failure_name = f"{prefix}health_checks_failure"
    duration_name = f"{prefix}health_checks_duration_seconds"
    try:
        failure = client.Gauge(
            failure_name,
            "Health check failing (1) or healthy (0), by check name",
            ["name"],
            # With several workers: the most recent result of any live worker (a dead worker's value goes).
            multiprocess_mode="livemostrecent",
        )
    except ValueError:  # registered by an earlier import of this module (e.g. a reloaded module)
        failure = _registered(client, failure_name)
    try:
        duration = client.Histogram(
            duration_name, "Duration of health checks in seconds, by check name", ["name"], buckets=DURATION_BUCKETS
        )
    except ValueError:
        duration = _registered(client, duration_name)
    if failure is None or duration is None:
        _LOGGER.warning("Health check metrics %s* clash with other metrics: not exported", prefix)
        return None
    return HealthMetrics(failure, duration)


def get_metrics() -> HealthMetrics | None:
    """The collectors for the configured prefix, or None when prometheus_client is missing."""
    prefix = config.settings.prometheus.prefix
    with _LOCK:
        if prefix not in _BY_PREFIX:
            _BY_PREFIX[prefix] = _create(prefix)
        return _BY_PREFIX[prefix]


def record(name: str, failed: bool, duration: float) -> None:
    """Export one check run; a metrics problem never fails a health check."""
    try:
        metrics = get_metrics()
        if metrics is None:
            return
        metrics.failure.labels(name=name).set(1 if failed else 0)
        metrics.duration.labels(name=name).observe(duration)
    except Exception:  # metrics are best effort; the check result matters more
        _LOGGER.warning("Cannot export the metrics of health check %r", name, exc_info=True)
