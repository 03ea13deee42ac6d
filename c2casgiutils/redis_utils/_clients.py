"""Build the Redis clients from the settings (a URL, or Sentinel: master and replica), one set per event loop.

Clients are asyncio clients of redis-py, with connection and socket timeouts from settings so that no
call waits forever. They are cached per event loop: a redis-py connection belongs to the loop that
opened it. The settings are checked when the clients are built (``_redis_options``): an unreadable URL, TLS
options without TLS, two different databases or an unknown option raise ``config.SettingsError``.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import TYPE_CHECKING, Any, NamedTuple

from c2casgiutils import _redis_options, config
from c2casgiutils._optional import require
from c2casgiutils.redis_utils._masking import safe_text

if TYPE_CHECKING:
    import redis.asyncio
    import redis.asyncio.sentinel

_LOGGER = logging.getLogger(__name__)


class RedisClients(NamedTuple):
    """The clients of one configuration: master for writes, replica for reads (same as master w/o Sentinel)."""

    master: redis.asyncio.Redis
    replica: redis.asyncio.Redis
    sentinel: redis.asyncio.sentinel.Sentinel | None


_CLIENTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RedisClients] = weakref.WeakKeyDictionary()


def is_configured() -> bool:
    """Whether a Redis URL or Sentinel is configured."""
    redis_settings = config.settings.redis
    return bool(redis_settings.url or redis_settings.sentinels)


def _timeouts() -> dict[str, Any]:
    redis_settings = config.settings.redis
    return {
        "socket_timeout": redis_settings.socket_timeout.total_seconds(),
        "socket_connect_timeout": redis_settings.connect_timeout.total_seconds(),
    }


def _retry(retries: int | None = None) -> dict[str, Any]:
    """The retry options of a client: ``retries`` (``C2C__REDIS__RETRIES``) immediate retries.

    Immediate: redis-py's default backoff would make a call to a stopped Redis take seconds. The errors are
    named: redis-py before 6.0 retries a command only on the errors of ``retry_on_error`` (none by default) and
    a connection only on its own ConnectionError and TimeoutError, not on the socket's timeout; later releases
    retry on these three by default.
    """
    retry_module = require("redis.asyncio.retry", "redis", "Redis support")
    backoff_module = require("redis.backoff", "redis", "Redis support")
    exceptions = require("redis.exceptions", "redis", "Redis support")
    count = config.settings.redis.retries if retries is None else retries
    return {
        "retry": retry_module.Retry(backoff_module.NoBackoff(), count),
        "retry_on_error": [exceptions.ConnectionError, exceptions.TimeoutError, TimeoutError],
    }


def _sentinel_kwargs(sentinel_options: dict[str, Any]) -> dict[str, Any]:
    """Options of the connections to the Sentinels: the package's timeouts, and no retry on the same Sentinel.

    redis-py asks the Sentinels in turn; the next Sentinel is the retry, so a dead one costs at most one
    connect timeout. A Sentinel's answers are small and quick, so its socket timeout is the connect timeout
    when that is shorter: one that accepts connections and never answers costs no more than an unreachable
    one. The data clients' ``C2C__REDIS__RETRIES`` repeats the whole lookup, which also replaces a stale
    Sentinel connection. ``C2C__REDIS__SENTINEL_OPTIONS`` overrides any of these.
    """
    timeouts = _timeouts()
    timeouts["socket_timeout"] = min(timeouts["socket_timeout"], timeouts["socket_connect_timeout"])
    return {**timeouts, **_retry(0), **sentinel_options}


def connection() -> _redis_options.Connection:
    """The checked arguments the clients are built with; SettingsError (naming the variable) when invalid."""
    try:
        return _redis_options.resolve(config.settings.redis)
    except ValueError as error:
        raise config.SettingsError(safe_text(str(error))) from None


def _check_options(client: redis.asyncio.Redis, variable: str) -> None:
    """Make one connection object (no I/O) so that an unknown option fails now, not at the first call."""
    pool = client.connection_pool
    try:
        pool.connection_class(**pool.connection_kwargs)
    except TypeError as error:
        raise config.SettingsError(f"{variable}: {safe_text(str(error))}") from None


def build() -> RedisClients | None:
    """Build new clients from the settings (None when Redis is not configured).

    Raises ``config.SettingsError`` for settings redis-py would refuse later (Sentinel without service name,
    unknown option, unreadable URL, TLS options without TLS, two different databases): start-up fails with a
    message naming the variable.
    """
    redis_settings = config.settings.redis
    if not is_configured():
        return None
    redis_asyncio = require("redis.asyncio", "redis", "Redis support")
    plan = connection()
    options = {**_timeouts(), **_retry(), **plan.options}
    if redis_settings.sentinels:
        sentinel_module = require("redis.asyncio.sentinel", "redis", "Redis Sentinel support")
        try:
            sentinel = sentinel_module.Sentinel(
                _redis_options.parse_sentinels(redis_settings.sentinels),
                sentinel_kwargs=_sentinel_kwargs(plan.sentinel_options),
                **options,
            )
        except TypeError as error:
            raise config.SettingsError(f"{_redis_options.SENTINEL_OPTIONS}: {safe_text(str(error))}") from None
        master = sentinel.master_for(redis_settings.servicename)
        replica = sentinel.slave_for(redis_settings.servicename)
        _check_options(master, _redis_options.OPTIONS)
        return RedisClients(master, replica, sentinel)
    assert plan.url is not None
    client = redis_asyncio.Redis.from_url(plan.url, **options)
    _check_options(client, _redis_options.OPTIONS)
    return RedisClients(client, client, None)


def get() -> RedisClients | None:
    """The clients for the running event loop, built on first use (None when Redis is not configured)."""
    if not is_configured():
        return None
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return build()
    clients = _CLIENTS.get(loop)
    if clients is None:
        clients = build()
        if clients is not None:
            _CLIENTS[loop] = clients
    return clients


async def cleanup() -> None:
    """Close the clients of the running loop (called by ``c2casgiutils.shutdown``)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    clients = _CLIENTS.pop(loop, None)
    if clients is None:
        return
    for client in {id(clients.master): clients.master, id(clients.replica): clients.replica}.values():
        try:
            await client.aclose()
        except Exception:
            _LOGGER.debug("Error while closing a Redis client", exc_info=True)
