"""Where the master and the replicas are: asked to the Sentinels, or read from the one server's client settings.

- :func:`master_address`: ``host:port`` of the master the service writes to.
- :func:`master_mismatch`: whether a connection is on the master Sentinel reports (the broadcast listener
  follows the master with it; a confirmed write refuses a server that is not it).
- :func:`replica_addresses` and :func:`known_replicas`: the replicas the Sentinels report alive.

With Sentinel the master is asked through the master client's pool, which also drops its idle connections
when the master changed, so that the next command goes to the new master.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from c2casgiutils._optional import require
from c2casgiutils.redis_utils._clients import RedisClients
from c2casgiutils.redis_utils._masking import safe_error
from c2casgiutils.redis_utils._replies import as_text

if TYPE_CHECKING:
    import redis.asyncio.connection
    import redis.asyncio.sentinel


def format_address(host: Any, port: Any) -> str:
    """``host:port`` (``[::1]:6379`` for an IPv6 address), whatever form Redis gave the host in."""
    host_text = as_text(host)
    return f"[{host_text}]:{port}" if ":" in host_text else f"{host_text}:{port}"


def connection_address(connection: redis.asyncio.connection.AbstractConnection | None) -> tuple[str, int]:
    """The host and port a connection was opened to (``("?", 0)`` when it has none: a unix socket)."""
    return as_text(getattr(connection, "host", "?")), int(getattr(connection, "port", 0) or 0)


def _service(clients: RedisClients) -> str:
    """The name of the master the Sentinels monitor, as the master client was built with."""
    return str(getattr(clients.master.connection_pool, "service_name", ""))


async def _reported_master(clients: RedisClients) -> tuple[str, int]:
    """The master the Sentinels report; the master pool drops its idle connections when it changed."""
    pool = cast("redis.asyncio.sentinel.SentinelConnectionPool", clients.master.connection_pool)
    host, port = await pool.get_master_address()  # type: ignore[no-untyped-call]
    return as_text(host), int(port)


async def master_address(clients: RedisClients) -> str:
    """``host:port`` of the master the service writes to (asked to the Sentinels with Sentinel); no credential."""
    if clients.sentinel is not None:
        return format_address(*await _reported_master(clients))
    kwargs = clients.master.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix:{kwargs['path']}"
    return format_address(kwargs.get("host", "localhost"), kwargs.get("port", 6379))


async def master_mismatch(
    clients: RedisClients, connection: redis.asyncio.connection.AbstractConnection | None
) -> str | None:
    """None when ``connection`` is on the master the Sentinels report (always without Sentinel), else why not."""
    if clients.sentinel is None:
        return None
    reported = await _reported_master(clients)
    current = connection_address(connection)
    if current == reported:
        return None
    return (
        f"Sentinel reports the master at {format_address(*reported)}, the connection is on {format_address(*current)}"
    )


async def _alive_replicas(clients: RedisClients) -> tuple[list[tuple[str, int]], list[str]]:
    """The replicas the first Sentinel that knows some reports alive; with no Sentinel answering, why.

    ``([], errors)`` with errors: no Sentinel could be asked; ``([], [])``: those that answered know no replica
    alive.
    """
    assert clients.sentinel is not None
    exceptions = require("redis.exceptions", "redis", "Redis support")
    errors: list[str] = []
    answered = False
    # Over a copy of the list: redis-py reorders it when a concurrent master lookup succeeds.
    for sentinel in list(clients.sentinel.sentinels):
        try:
            replicas = await sentinel.sentinel_slaves(_service(clients))
        except (exceptions.ConnectionError, exceptions.TimeoutError, exceptions.ResponseError) as error:
            errors.append(safe_error(error))
            continue
        answered = True
        alive = clients.sentinel.filter_slaves(replicas)
        if alive:
            return [(as_text(host), int(port)) for host, port in alive], []
    return [], [] if answered else errors


async def replica_addresses(clients: RedisClients) -> list[str]:
    """``host:port`` of the replicas the Sentinels report alive (none without Sentinel).

    Raises ``redis.exceptions.ConnectionError`` (with the reasons, no credential) when no Sentinel answered.
    """
    if clients.sentinel is None:
        return []
    alive, errors = await _alive_replicas(clients)
    if errors:
        exceptions = require("redis.exceptions", "redis", "Redis support")
        raise exceptions.ConnectionError(f"no Sentinel answered about {_service(clients)!r}: {'; '.join(errors)}")
    return sorted(format_address(host, port) for host, port in alive)


async def known_replicas(clients: RedisClients) -> list[tuple[str, int]] | None:
    """The replicas the Sentinels know and do not consider down (None without Sentinel; [] when none answered)."""
    if clients.sentinel is None:
        return None
    alive, _ = await _alive_replicas(clients)
    return alive
