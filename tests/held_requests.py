"""Requests that a test service holds in progress until the test releases them, through files of a state folder.

While held, a request has a file ``held/<pid>-<n>``; it ends when ``release`` exists (after 60 s at most).
"""

from __future__ import annotations

import asyncio
import itertools
import os
from pathlib import Path

_COUNTER = itertools.count()


async def hold_until_released(state: Path) -> None:
    """Stay in progress until ``state/release`` exists (60 s at most)."""
    marker = state / "held" / f"{os.getpid()}-{next(_COUNTER)}"
    marker.write_text("")
    try:
        for _ in range(1200):
            if (state / "release").exists():
                break
            await asyncio.sleep(0.05)
    finally:
        marker.unlink(missing_ok=True)
