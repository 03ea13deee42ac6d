"""HMAC signature of broadcast frames, and the replay guard of signed requests.

A frame is ``<signature> <body>``: the signature is the hex HMAC-SHA256 of the Redis channel name and the
body with ``settings.broadcast.secret`` (read when a :class:`Signer` is built), or ``-`` when no secret is
set. The channel is signed too, so a message captured on one channel cannot be replayed on another; the
replay guard refuses a signed request seen before or older than ``settings.broadcast.max_age``.
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


def _digest(key: bytes, channel: bytes, body: bytes) -> bytes:
    mac = hmac.new(key, channel, hashlib.sha256)
    mac.update(b"\0")
    mac.update(body)
    return mac.hexdigest().encode()


class Signer:
    """Signs and opens frames with one secret (None: unsigned), read once when the backend is built."""

    def __init__(self, secret: str | None) -> None:
        self._key = secret.encode() if secret else None

    @classmethod
    def from_settings(cls) -> Signer:
        """The signer of ``C2C__BROADCAST__SECRET``."""
        return cls(config.settings.broadcast.secret)

    @property
    def signed(self) -> bool:
        """Whether frames are signed (a secret is set)."""
        return self._key is not None

    def sign(self, channel: str, body: bytes) -> bytes:
        """Frame ``body`` for ``channel``, signed when there is a secret."""
        signature = UNSIGNED if self._key is None else _digest(self._key, channel.encode(), body)
        return signature + _SEPARATOR + body

    def open(self, channel: bytes, frame: bytes) -> bytes:
        """The body of a frame received on ``channel``; SignatureError when it must be ignored.

        Without a secret every well-formed frame is accepted (signed or not).
        """
        signature, separator, body = frame.partition(_SEPARATOR)
        if not separator:
            raise SignatureError("malformed frame (no signature field)")
        if self._key is None:
            return body
        if signature == UNSIGNED:
            raise SignatureError("unsigned message while C2C__BROADCAST__SECRET is set")
        if not hmac.compare_digest(signature, _digest(self._key, channel, body)):
            raise SignatureError("wrong signature")
        return body


def sign(channel: str, body: bytes) -> bytes:
    """Frame ``body`` for ``channel`` with the secret configured now (see :class:`Signer`)."""
    return Signer.from_settings().sign(channel, body)


def open_frame(channel: bytes, frame: bytes) -> bytes:
    """Open a frame with the secret configured now (see :meth:`Signer.open`)."""
    return Signer.from_settings().open(channel, frame)


class ReplayGuard:
    """Refuse signed requests that are too old or already seen (bounded memory).

    Whether frames are signed and their maximum age are read from the settings when the guard is built,
    unless given.
    """

    def __init__(self, max_entries: int = 10_000, *, signed: bool | None = None, max_age: float | None = None) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()  # id -> message timestamp
        self._max_entries = max_entries
        # Messages this old or older are refused: ids forgotten to stay bounded are within it.
        self._floor = float("-inf")
        self._signed = Signer.from_settings().signed if signed is None else signed
        self._max_age = config.settings.broadcast.max_age.total_seconds() if max_age is None else max_age

    def check(self, message_id: str, timestamp: float) -> None:
        """Raise SignatureError for a replayed or stale request; remember the id otherwise."""
        if not self._signed:
            return  # without a secret anybody can forge a message: a replay check would protect nothing
        max_age = self._max_age
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
