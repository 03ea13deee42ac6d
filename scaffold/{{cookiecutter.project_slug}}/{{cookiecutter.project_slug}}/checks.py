"""The service's own health checks."""

import asyncio
import os
import time

from c2casgiutils import health_checks

_STARTED = time.monotonic()


class Liveness(health_checks.Check):
    """The process answers and its event loop runs: depends on no external service.

    Use it for the orchestrator's liveness probe, so that a database or Redis outage does not get the
    service restarted (readiness takes it out of the load balancer instead).
    """

    async def check(self) -> health_checks.Result:
        before = time.monotonic()
        await asyncio.sleep(0)
        return health_checks.Result(
            status_code=200,
            payload={
                "pid": os.getpid(),
                "uptime_seconds": round(before - _STARTED, 1),
                "loop_lag_ms": round((time.monotonic() - before) * 1000, 3),
            },
        )
