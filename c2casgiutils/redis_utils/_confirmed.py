"""Writes to Redis that are confirmed on the current master before anybody is told they succeeded.

One call: ``await redis_utils.confirmed_write(clients, "SET", key, value, what="...")`` returns the reply once
the write is safe, or raises :class:`NotStoredError` (``redis_utils.is_unavailable`` is true for it) within
:func:`write_bound`.

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
from typing import TYPE_CHECKING, Any

from c2casgiutils import config
from c2casgiutils.redis_utils._clients import RedisClients
from c2casgiutils.redis_utils._errors import RedisUnavailableError, is_unavailable
from c2casgiutils.redis_utils._masking import describe, safe_error
from c2casgiutils.redis_utils._replies import as_text
from c2casgiutils.redis_utils._sentinel import connection_address, known_replicas, master_mismatch

if TYPE_CHECKING:
    import redis.asyncio

_LOGGER = logging.getLogger(__name__)
_WAIT_SLICE_MS = 500
_FIRST_RETRY_DELAY = 0.05
_MAX_RETRY_DELAY = 0.5


class NotStoredError(RedisUnavailableError):
    """A write could not be confirmed on the current Redis master within the bound."""


class _NotConfirmedError(Exception):
    """One attempt did not confirm the write (retried until the bound)."""


def write_bound() -> float:
    """How long a confirmed write may take: the Redis connect timeout plus the socket timeout."""
    redis_settings = config.settings.redis
    return redis_settings.connect_timeout.total_seconds() + redis_settings.socket_timeout.total_seconds()


async def _replication_info(clients: RedisClients, address: tuple[str, int]) -> dict[str, Any] | None:
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
        _LOGGER.debug("Could not read the replication state of %s:%s: %s", address[0], address[1], safe_error(error))
        return None
    finally:
        await client.aclose()
    return info


async def _needed_acknowledgements(
    clients: RedisClients, single: redis.asyncio.Redis, role: list[Any], where: str
) -> int:
    """How many replicas must acknowledge a write on this server (see the module)."""
    connected = {(as_text(entry[0]), int(entry[1])) for entry in (role[2] if len(role) > 2 else [])}
    known = await known_replicas(clients)
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


async def _attempt(clients: RedisClients, command: tuple[Any, ...], deadline: float) -> Any:
    loop = asyncio.get_running_loop()
    single: redis.asyncio.Redis = clients.master.client()  # one connection: WAIT counts the writes made on it
    try:
        role = await single.execute_command("ROLE")  # type: ignore[no-untyped-call]
        connection = single.connection
        host, port = connection_address(connection)
        if as_text(role[0]) != "master":
            if connection is not None:
                await connection.disconnect()
            raise _NotConfirmedError(f"{host}:{port} is a {as_text(role[0])}, not a master")
        mismatch = await master_mismatch(clients, connection)
        if mismatch is not None:
            if connection is not None:
                await connection.disconnect()  # the next attempt connects to the master Sentinel reports
            raise _NotConfirmedError(mismatch)
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
    return isinstance(error, _NotConfirmedError) or is_unavailable(error)


async def confirmed_write(
    clients: RedisClients,
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
            _LOGGER.debug("Redis %s not confirmed (attempt %d): %s", what, attempts, safe_error(error))
        await asyncio.sleep(max(0.0, min(delay, deadline - loop.time())))
        delay = min(delay * 2, _MAX_RETRY_DELAY)
    reason = safe_error(last_error) if last_error is not None else "no attempt finished"
    raise NotStoredError(
        f"{what} not confirmed on the Redis master {describe()} within {limit:.1f}s "
        f"({attempts} attempts; last: {reason})"
    )
