"""Redis check: ping the master and, with Sentinel, the replica, through ``redis_utils``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from c2casgiutils import redis_utils
from c2casgiutils._health.check import Check
from c2casgiutils._health.models import Result

if TYPE_CHECKING:
    import redis.asyncio

NOT_CONFIGURED = "Redis is not configured (C2C__REDIS__URL and C2C__REDIS__SENTINELS are unset)"


async def _ping(client: redis.asyncio.Redis) -> str | None:
    """None when the server answered, else the error."""
    try:
        await client.ping()
    except Exception as error:  # any client error means unhealthy
        return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return None


class Redis(Check):
    """Ping the configured Redis (``C2C__REDIS__*``): the master, and the replica with Sentinel.

    Without Redis configured the service runs in single-process mode, which is not a failure: the check
    answers 200 with ``configured: false``, unless ``required=True`` makes it a 500.
    """

    def __init__(
        self,
        tags: Iterable[str] | None = None,
        *,
        name: str | None = None,
        timeout: float | timedelta | None = None,
        cache_ttl: float | timedelta | None = None,
        required: bool = False,
    ) -> None:
        """Configure the check."""
        super().__init__(tags=tags, name=name, timeout=timeout, cache_ttl=cache_ttl)
        self.required = required

    async def check(self) -> Result:
        """Ping concurrently; 500 when any ping fails."""
        clients = redis_utils.get()
        if clients is None:
            status = 500 if self.required else 200
            payload: dict[str, Any] = {"configured": False, "message": NOT_CONFIGURED}
            if self.required:
                payload["error"] = NOT_CONFIGURED
            return Result(status_code=status, payload=payload)
        targets = {"master": clients.master}
        if clients.replica is not clients.master:
            targets["replica"] = clients.replica
        errors = await asyncio.gather(*(_ping(client) for client in targets.values()))
        payload = {"configured": True, "redis": redis_utils.describe()}
        failed = []
        for role, error in zip(targets, errors, strict=True):
            payload[role] = "ok" if error is None else error
            if error is not None:
                failed.append(f"{role}: {error}")
        if failed:
            payload["error"] = "; ".join(failed)
            return Result(status_code=500, payload=payload)
        return Result(payload=payload)
