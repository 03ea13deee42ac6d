"""HMAC signature of broadcast frames, and the replay guard of signed requests.

A frame is ``<signature> <body>``: the signature is the hex HMAC-SHA256 of the Redis channel name and the
body with ``settings.broadcast.secret``, or ``-`` when no secret is set. The channel is signed too, so a
message captured on one channel cannot be replayed on another; the replay guard refuses a signed request
seen before or older than ``settings.broadcast.max_age``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import OrderedDict

from c2casgiutils import config

UNSIGNED = b"-"
_SEPARATOR = b" "


class SignatureError(ValueError):
    """A frame that must be ignored: unsigned, wrongly signed, or malformed."""


def _key() -> bytes | None:
    secret = config.settings.broadcast.secret
    return secret.encode() if secret else None


def _digest(key: bytes, channel: bytes, body: bytes) -> bytes:
    mac = hmac.new(key, channel, hashlib.sha256)
    mac.update(b"\0")
    mac.update(body)
    return mac.hexdigest().encode()


def sign(channel: str, body: bytes) -> bytes:
    """Frame ``body`` for ``channel``, signed when a secret is configured."""
    key = _key()
    signature = UNSIGNED if key is None else _digest(key, channel.encode(), body)
    return signature + _SEPARATOR + body


def open_frame(channel: bytes, frame: bytes) -> bytes:
    """The body of a frame received on ``channel``; SignatureError when it must be ignored.

    Without a configured secret every well-formed frame is accepted (signed or not).
    """
    signature, separator, body = frame.partition(_SEPARATOR)
    if not separator:
        raise SignatureError("malformed frame (no signature field)")
    key = _key()
    if key is None:
        return body
    if signature == UNSIGNED:
        raise SignatureError("unsigned message while C2C__BROADCAST__SECRET is set")
    if not hmac.compare_digest(signature, _digest(key, channel, body)):
        raise SignatureError("wrong signature")
    return body


class ReplayGuard:
    """Refuse signed requests that are too old or already seen (bounded memory)."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()  # id -> message timestamp
        self._max_entries = max_entries
        # Messages this old or older are refused: ids forgotten to stay bounded are within it.
        self._floor = float("-inf")

    def check(self, message_id: str, timestamp: float) -> None:
        """Raise SignatureError for a replayed or stale request; remember the id otherwise."""
        if _key() is None:
            return  # without a secret anybody can forge a message: a replay check would protect nothing
        max_age = config.settings.broadcast.max_age.total_seconds()
        now = time.time()
        if abs(now - timestamp) > max_age:
            raise SignatureError(f"message timestamp is {now - timestamp:.1f}s away from now (max_age {max_age}s)")
        if message_id in self._seen:
            raise SignatureError("replayed message")
        if timestamp <= self._floor:
            raise SignatureError("message older than the ids the replay guard still remembers")
        self._seen[message_id] = timestamp
        while self._seen:
            oldest_id, oldest_timestamp = next(iter(self._seen.items()))
            if now - oldest_timestamp > max_age:
                del self._seen[oldest_id]  # too old to pass the age check anyway
            elif len(self._seen) > self._max_entries:
                # Forgetting a fresh id would let it be replayed: refuse from now on what is not newer.
                self._floor = max(self._floor, oldest_timestamp)
                del self._seen[oldest_id]
            else:
                break
