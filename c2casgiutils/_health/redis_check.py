"""Redis check: ping the master and, with Sentinel, a replica, through ``redis_utils``.

The payload names what was reached, without credentials: ``redis`` (the masked URL, or the Sentinels and
service), ``master_address`` (``host:port``, asked to the Sentinels with Sentinel) and, with Sentinel,
``replicas`` (the replicas the Sentinels report alive) and ``replica``: ``"ok"`` when one of them answered,
``"no replica"`` when the Sentinels report none (reads then go to the master), else the error.
"""

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
NO_REPLICA = "no replica"


async def _ping(client: redis.asyncio.Redis) -> str | None:
    """None when the server answered, else the error (without credentials)."""
    try:
        await client.ping()
    except Exception as error:  # any client error means unhealthy
        return redis_utils.safe_error(error)
    return None


async def _master(clients: redis_utils.RedisClients) -> tuple[str | None, str | None]:
    """The master's address and the error of reaching it (None when it answered)."""
    try:
        address = await redis_utils.master_address(clients)
    except Exception as error:
        return None, redis_utils.safe_error(error)
    return address, await _ping(clients.master)


async def _replicas(clients: redis_utils.RedisClients) -> tuple[list[str], str | None]:
    """The replicas reported alive, and ``ok`` / ``no replica`` / the error of pinging one of them."""
    try:
        found = await redis_utils.replica_addresses(clients)
    except Exception as error:
        return [], redis_utils.safe_error(error)
    if not found:
        return [], NO_REPLICA
    ping_error = await _ping(clients.replica)
    return found, "ok" if ping_error is None else ping_error


class Redis(Check):
    """Ping the configured Redis (``C2C__REDIS__*``): the master, and a replica with Sentinel.

    Without Redis configured the service runs in single-process mode, which is not a failure: the check
    answers 200 with ``configured: false``, unless ``required=True`` makes it a 500. With Sentinel and no
    replica the check answers 200 with ``replica: "no replica"``, unless ``replica_required=True``.
    """

    def __init__(
        self,
        tags: Iterable[str] | None = None,
        *,
        name: str | None = None,
        timeout: float | timedelta | None = None,
        cache_ttl: float | timedelta | None = None,
        required: bool = False,
        replica_required: bool = False,
    ) -> None:
        """Configure the check."""
        super().__init__(tags=tags, name=name, timeout=timeout, cache_ttl=cache_ttl)
        self.required = required
        self.replica_required = replica_required

    async def check(self) -> Result:
        """Reach the master (and the replicas) concurrently; 500 when one that should answer does not."""
        try:
            clients = redis_utils.get()
        except Exception as error:  # settings redis-py refuses: unhealthy, with the reason
            return Result(status_code=500, payload={"configured": True, "error": redis_utils.safe_error(error)})
        if clients is None:
            status = 500 if self.required else 200
            payload: dict[str, Any] = {"configured": False, "message": NOT_CONFIGURED}
            if self.required:
                payload["error"] = NOT_CONFIGURED
            return Result(status_code=status, payload=payload)
        payload = {"configured": True, "redis": redis_utils.describe()}
        if clients.sentinel is None:
            address, master_error = await _master(clients)
            replica: str | None = None
        else:
            (address, master_error), (replicas, replica) = await asyncio.gather(_master(clients), _replicas(clients))
            payload["replicas"] = replicas
        payload["master_address"] = address
        payload["master"] = "ok" if master_error is None else master_error
        failed = [] if master_error is None else [f"master: {master_error}"]
        if replica is not None:
            payload["replica"] = replica
            if replica != "ok" and (replica != NO_REPLICA or self.replica_required):
                failed.append(f"replica: {replica}")
        if failed:
            payload["error"] = "; ".join(failed)
            return Result(status_code=500, payload=payload)
        return Result(payload=payload)
