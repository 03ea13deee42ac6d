"""The one Redis layer: every Redis user of the package (broadcast, logging levels, health check, admin tools) calls it.

What a new Redis user needs is one call each:

- **a client**: ``clients = redis_utils.get()`` gives the clients of the running event loop, built from
  ``C2C__REDIS__*`` with bounded timeouts (``clients.master`` for writes, ``clients.replica`` for reads,
  ``clients.sentinel`` with Sentinel), or None when Redis is not configured;
- **a write that survives a failover**: ``await redis_utils.confirmed_write(clients, "SET", key, value,
  what="...")`` returns once the current master and its replicas hold it, else raises ``NotStoredError``;
- **"is Redis down?"**: ``redis_utils.is_unavailable(error)`` says whether an exception means Redis cannot be
  reached now (answer 503, retry later) rather than a bug;
- **a text fit for a log line or a response**: ``redis_utils.safe_error(error)`` (``safe_text(text)`` for a
  message), and ``redis_utils.describe()`` to name the configured Redis, never with a credential.

Private modules, one job each: ``_clients`` (build the clients from the settings, one set per event loop),
``_sentinel`` (master and replica lookups), ``_confirmed`` (confirmed writes), ``_errors`` (what "unavailable"
means), ``_masking`` (no credential in any text), ``_replies`` (Redis replies as text). The rules of the
settings themselves (URL, TLS, database, the Sentinel list) are ``c2casgiutils._redis_options``, below
``config``, which applies them at start-up.
"""

from c2casgiutils._redis_options import parse_sentinels
from c2casgiutils.redis_utils._clients import RedisClients, build, cleanup, connection, get, is_configured
from c2casgiutils.redis_utils._confirmed import NotStoredError, confirmed_write, write_bound
from c2casgiutils.redis_utils._errors import RedisUnavailableError, is_unavailable
from c2casgiutils.redis_utils._masking import describe, mask_url, safe_error, safe_text
from c2casgiutils.redis_utils._replies import as_bytes, as_text
from c2casgiutils.redis_utils._sentinel import (
    connection_address,
    format_address,
    known_replicas,
    master_address,
    master_mismatch,
    replica_addresses,
)

__all__ = [
    "NotStoredError",
    "RedisClients",
    "RedisUnavailableError",
    "as_bytes",
    "as_text",
    "build",
    "cleanup",
    "confirmed_write",
    "connection",
    "connection_address",
    "describe",
    "format_address",
    "get",
    "is_configured",
    "is_unavailable",
    "known_replicas",
    "mask_url",
    "master_address",
    "master_mismatch",
    "parse_sentinels",
    "replica_addresses",
    "safe_error",
    "safe_text",
    "write_bound",
]
