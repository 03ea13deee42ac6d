"""Redis replies as Python values: redis-py gives ``bytes`` (``str`` with ``decode_responses``), here both fit."""

from __future__ import annotations

from typing import Any


def as_text(value: Any) -> str:
    """A reply (a key, a value, a host name, a channel) as text; bytes that are not UTF-8 are replaced, not fatal."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def as_bytes(value: Any) -> bytes:
    """A reply (a channel, a message) as bytes."""
    return value if isinstance(value, bytes) else str(value).encode()
