"""Failed-attempt limiters: a tiny interface and one module per implementation.

``LocalFailureLimiter`` counts in the process's memory; ``RedisFailureLimiter`` counts in Redis, shared by every
worker and replica; ``FallbackFailureLimiter`` uses the shared one and falls back to the local one while Redis
cannot be reached. ``auth._rate_limit`` builds the one the settings ask for.
"""

from c2casgiutils.auth._limiter._base import FailureLimiter
from c2casgiutils.auth._limiter._fallback import FallbackFailureLimiter
from c2casgiutils.auth._limiter._local import LocalFailureLimiter
from c2casgiutils.auth._limiter._redis import RedisFailureLimiter

__all__ = ["FailureLimiter", "FallbackFailureLimiter", "LocalFailureLimiter", "RedisFailureLimiter"]
