"""Failed-attempt limiters: a tiny interface and one module per implementation.

``LocalFailureLimiter`` counts in the process's memory. ``auth._rate_limit`` builds the one the settings ask for.
"""

from c2casgiutils.auth._limiter._base import FailureLimiter
from c2casgiutils.auth._limiter._local import LocalFailureLimiter

__all__ = ["FailureLimiter", "LocalFailureLimiter"]
