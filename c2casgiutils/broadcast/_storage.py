"""Writes to Redis that are confirmed on the current master before anybody is told they succeeded.

A Redis write that answers ``OK`` is not yet safe: during a Sentinel failover the old master keeps
accepting writes until Sentinel demotes it, and they are lost when it resynchronises from the new master.
:func:`confirmed_write` only returns when

- the server that took the write answers ``ROLE`` ``master`` (a demoted master says ``slave``);
- with Sentinel, it is the master Sentinel reports (otherwise the idle connections of the pool are dropped,
  so that the next attempt asks Sentinel again);
- every replica it may be replaced by acknowledged it (``WAIT`` with a bounded timeout, on the same
  connection): the replicas Sentinel knows and does not consider down, or, without Sentinel, the replicas
  connected to the server.

While a failover is under way two servers answer as master for a while. A replica Sentinel knows that is
not connected to the server is asked for its replication ids: when it is a master this server was promoted
from (this server's ``master_replid2`` is its ``master_replid``), it is the old master waiting to be
demoted and is not waited for; when it was promoted from this server, this server is the old master and
the write is refused at once; otherwise it is waited for, so the write is not confirmed until it is back.

Otherwise it raises :class:`NotStoredError` within the bound: at once when a single Redis without
Sentinel cannot be reached; with Sentinel connection errors are retried, as the master may be moving.
The write may then still exist on a server (it is retried as is, so only idempotent commands fit:
``SET``, ``DEL``); the caller must not announce it as done.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import TYPE_CHECKING, Any

from c2casgiutils import config, redis_utils
from c2casgiutils.broadcast.types import BroadcastUnavailableError

if TYPE_CHECKING:
    import redis.asyncio

_LOGGER = logging.getLogger(__name__)
_WAIT_SLICE_MS = 500
_FIRST_RETRY_DELAY = 0.05
_MAX_RETRY_DELAY = 0.5


class NotStoredError(BroadcastUnavailableError):
    """A write could not be confirmed on the current Redis master within the bound."""


class _NotConfirmedError(Exception):
    """One attempt did not confirm the write (retried until the bound)."""


def write_bound() -> float:
    """How long a confirmed write may take: the Redis connect timeout plus the socket timeout."""
    redis_settings = config.settings.redis
    return redis_settings.connect_timeout.total_seconds() + redis_settings.socket_timeout.total_seconds()


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


async def _known_replicas(clients: redis_utils.RedisClients) -> list[tuple[str, int]] | None:
    """The replicas Sentinel knows and does not consider down (None without Sentinel)."""
    if clients.sentinel is None:
        return None
    service = getattr(clients.master.connection_pool, "service_name", None) or config.settings.redis.servicename
    replicas = await clients.sentinel.discover_slaves(str(service))
    return [(_text(host), int(port)) for host, port in replicas]


async def _replication_info(clients: redis_utils.RedisClients, address: tuple[str, int]) -> dict[str, Any] | None:
    """``INFO replication`` of another server of the set, with the data clients' options (None: unreachable)."""
    import redis.asyncio  # noqa: PLC0415 - Redis is installed when clients exist

    assert clients.sentinel is not None
    options = dict(getattr(clients.sentinel, "connection_kwargs", {}))
    client = redis.asyncio.Redis(**{**options, "host": address[0], "port": address[1]})
    try:
        info: dict[str, Any] = await client.info("replication")
    except Exception as error:
        if isinstance(error, asyncio.CancelledError):
            raise
        _LOGGER.debug(
            "Could not read the replication state of %s:%s: %s", address[0], address[1], redis_utils.safe_error(error)
        )
        return None
    finally:
        await client.aclose()
    return info


async def _needed_acknowledgements(
    clients: redis_utils.RedisClients, single: redis.asyncio.Redis, role: list[Any], where: str
) -> int:
    """How many replicas must acknowledge a write on this server (see the module)."""
    connected = {(_text(entry[0]), int(entry[1])) for entry in (role[2] if len(role) > 2 else [])}
    known = await _known_replicas(clients)
    if known is None:
        return len(connected)
    absent = [address for address in known if address not in connected]
    # max(): a replica may be known to Sentinel under another address than the one the master sees.
    needed = max(len(connected), len(known))
    if not absent:
        return needed
    own: dict[str, Any] = await single.info("replication")
    old_masters = 0
    for address in absent:
        info = await _replication_info(clients, address)
        if info is None or info.get("role") != "master":
            continue  # unreachable, or a replica reconnecting: wait for it
        if own.get("master_replid2") == info.get("master_replid"):
            old_masters += 1  # promoted from it: Sentinel demotes it and it resynchronises from here
        elif info.get("master_replid2") == own.get("master_replid"):
            raise _NotConfirmedError(f"{address[0]}:{address[1]} was promoted from {where}, which is being replaced")
    return max(len(connected), len(known) - old_masters)


async def _check_sentinel_master(clients: redis_utils.RedisClients, host: str, port: int) -> None:
    if clients.sentinel is None:
        return
    pool = clients.master.connection_pool
    get_master_address = getattr(pool, "get_master_address", None)
    if get_master_address is None:
        return
    # Also drops the idle connections of the pool when the master changed.
    master_host, master_port = await get_master_address()
    if (_text(master_host), int(master_port)) != (host, port):
        raise _NotConfirmedError(f"{host}:{port} is not the master Sentinel reports ({master_host}:{master_port})")


async def _attempt(clients: redis_utils.RedisClients, command: tuple[Any, ...], deadline: float) -> Any:
    loop = asyncio.get_running_loop()
    single: redis.asyncio.Redis = clients.master.client()  # one connection: WAIT counts the writes made on it
    try:
        role = await single.execute_command("ROLE")  # type: ignore[no-untyped-call]
        connection = single.connection
        host = _text(getattr(connection, "host", "?"))
        port = int(getattr(connection, "port", 0) or 0)
        if _text(role[0]) != "master":
            if connection is not None:
                await connection.disconnect()
            raise _NotConfirmedError(f"{host}:{port} is a {_text(role[0])}, not a master")
        try:
            await _check_sentinel_master(clients, host, port)
        except _NotConfirmedError:
            if connection is not None:
                await connection.disconnect()  # the next attempt connects to the master Sentinel reports
            raise
        needed = await _needed_acknowledgements(clients, single, role, f"{host}:{port}")
        result = await single.execute_command(*command)  # type: ignore[no-untyped-call]
        if needed:
            wait_ms = max(1, min(_WAIT_SLICE_MS, int((deadline - loop.time()) * 1000)))
            acknowledged = int(await single.execute_command("WAIT", needed, wait_ms))  # type: ignore[no-untyped-call]
            if acknowledged < needed:
                raise _NotConfirmedError(f"{acknowledged} of {needed} replicas of {host}:{port} acknowledged the write")
        return result
    finally:
        await single.aclose()


def _is_retryable(error: BaseException) -> bool:
    if isinstance(error, _NotConfirmedError | OSError | TimeoutError):
        return True
    redis_exceptions = sys.modules.get("redis.exceptions")
    return redis_exceptions is not None and isinstance(error, redis_exceptions.RedisError)


async def confirmed_write(
    clients: redis_utils.RedisClients,
    *command: Any,
    bound: float | None = None,
    what: str = "write",
) -> Any:
    """Run the idempotent write ``command`` and return its reply once it is confirmed (see the module).

    Raises :class:`NotStoredError` when it cannot be confirmed within ``bound`` seconds (default
    :func:`write_bound`).
    """
    limit = write_bound() if bound is None else bound
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    delay = _FIRST_RETRY_DELAY
    attempts = 0
    last_error: BaseException | None = None
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        attempts += 1
        try:
            return await asyncio.wait_for(_attempt(clients, command, deadline), remaining)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if not _is_retryable(error):
                raise
            if clients.sentinel is None and not isinstance(error, _NotConfirmedError):
                # One server and it cannot be reached: nothing a retry within seconds would change.
                last_error = error
                break
            last_error = error
            _LOGGER.debug("Redis %s not confirmed (attempt %d): %s", what, attempts, redis_utils.safe_error(error))
        await asyncio.sleep(max(0.0, min(delay, deadline - loop.time())))
        delay = min(delay * 2, _MAX_RETRY_DELAY)
    reason = redis_utils.safe_error(last_error) if last_error is not None else "no attempt finished"
    raise NotStoredError(
        f"{what} not confirmed on the Redis master {redis_utils.describe()} within {limit:.1f}s "
        f"({attempts} attempts; last: {reason})"
    )
