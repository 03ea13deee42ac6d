"""Whether an exception means "Redis cannot be reached now" (answer 503, retry later) rather than a bug.

One call: ``redis_utils.is_unavailable(error)``. It is true for

- :class:`RedisUnavailableError` and its subclasses: a write not confirmed on the master (``NotStoredError``),
  a broadcast not sent (``broadcast.BroadcastUnavailableError``);
- ``OSError`` (refused, reset, ``TimeoutError``): the network between this process and Redis;
- every ``redis.exceptions.RedisError``: a connection or timeout error, a server that is loading, read-only
  (a demoted master) or refuses the command during a failover.

redis-py is not imported here: an error can only be one of its exceptions once redis-py is imported.
"""

from __future__ import annotations

import sys


class RedisUnavailableError(Exception):
    """Redis is configured but could not do what was asked in time: nothing is known to be done."""


def is_unavailable(error: BaseException) -> bool:
    """Whether ``error`` means Redis (hence what needs it: storage, the broadcast) cannot be reached now."""
    if isinstance(error, RedisUnavailableError | OSError):  # TimeoutError is an OSError
        return True
    redis_exceptions = sys.modules.get("redis.exceptions")
    return redis_exceptions is not None and isinstance(error, redis_exceptions.RedisError)
