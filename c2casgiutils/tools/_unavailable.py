"""Turn "broadcast or Redis unavailable" into a 503 that says why (no credential), for the admin tools."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

from fastapi import HTTPException

from c2casgiutils import config, redis_utils

UNAVAILABLE_RESPONSES: dict[int | str, dict[str, Any]] = {
    503: {"description": "Redis is configured but unreachable: the other processes cannot be asked"}
}
"""The ``responses=`` of a route that broadcasts: documents its 503."""


@contextlib.contextmanager
def unavailable_as_503(what: str) -> Iterator[None]:
    """A 503 with the reason (and ``Retry-After``) when the broadcast cannot reach the other processes."""
    try:
        yield
    except Exception as error:
        if not redis_utils.is_unavailable(error):
            raise
        retry_after = max(1, math.ceil(config.settings.broadcast.reconnect_delay_max.total_seconds()))
        raise HTTPException(
            503,
            f"{what} needs the broadcast to every process, which is unavailable: {redis_utils.safe_error(error)}",
            headers={"Retry-After": str(retry_after)},
        ) from None
