"""The one place that builds Redis clients from settings: a URL, or Sentinel (master and replica).

Clients are asyncio clients of redis-py, with connection and socket timeouts from settings so that no
call waits forever. They are cached per event loop: a redis-py connection belongs to the loop that
opened it.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
import weakref
from typing import TYPE_CHECKING, Any, NamedTuple

from c2casgiutils import config
from c2casgiutils._optional import require

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


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***``, fit for logs and health payloads."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None:
        return url
    user = urllib.parse.quote(parts.username or "", safe="")
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def describe() -> str:
    """A description of the configured Redis, without credentials."""
    redis_settings = config.settings.redis
    if redis_settings.sentinels:
        return f"sentinel {redis_settings.sentinels} service {redis_settings.servicename}"
    if redis_settings.url:
        return mask_url(redis_settings.url)
    return "not configured"


def parse_sentinels(value: str) -> list[tuple[str, int]]:
    """Read ``host:port,host:port``."""
    result = []
    for item in value.split(","):
        host, _, port = item.strip().rpartition(":")
        result.append((host.strip("[]"), int(port)))
    return result


def _timeouts() -> dict[str, Any]:
    redis_settings = config.settings.redis
    return {
        "socket_timeout": redis_settings.socket_timeout.total_seconds(),
        "socket_connect_timeout": redis_settings.connect_timeout.total_seconds(),
    }


def _retry() -> Any:
    """Immediate retries only: redis-py's default backoff would make a call to a stopped Redis take seconds."""
    retry_module = require("redis.asyncio.retry", "redis", "Redis support")
    backoff_module = require("redis.backoff", "redis", "Redis support")
    return retry_module.Retry(backoff_module.NoBackoff(), config.settings.redis.retries)


def build() -> RedisClients | None:
    """Build new clients from the settings (None when Redis is not configured)."""
    redis_settings = config.settings.redis
    if not is_configured():
        return None
    redis_asyncio = require("redis.asyncio", "redis", "Redis support")
    options = {**_timeouts(), "retry": _retry(), **redis_settings.options}
    if redis_settings.sentinels:
        sentinel_module = require("redis.asyncio.sentinel", "redis", "Redis Sentinel support")
        if not redis_settings.servicename:
            raise config.SettingsError("C2C__REDIS__SENTINELS is set but C2C__REDIS__SERVICENAME is missing")
        sentinel = sentinel_module.Sentinel(
            parse_sentinels(redis_settings.sentinels),
            sentinel_kwargs=_timeouts(),
            db=redis_settings.db,
            **options,
        )
        master = sentinel.master_for(redis_settings.servicename)
        replica = sentinel.slave_for(redis_settings.servicename)
        return RedisClients(master, replica, sentinel)
    assert redis_settings.url is not None
    client = redis_asyncio.Redis.from_url(redis_settings.url, **options)
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
