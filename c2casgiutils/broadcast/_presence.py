"""Which processes should answer a broadcast: the presence table every listener keeps up to date.

Each process's listener writes, in the Redis hash ``<prefix>__presence__``, one field per process (its
token ``<host>.<pid>.<random>``) holding ``{"hostname", "pid", "channels", "expires"}`` and refreshes it
every :data:`INTERVAL` seconds while it is connected (``expires`` is :data:`TTL` seconds ahead, wall
clock). A process leaving cleanly deletes its field; a killed one stops refreshing and is forgotten when
its entry expires.

A caller reads the table before publishing: the live entries that list the channel are the processes it
expects an answer from. Redis may have lost the table (a restart without persistence): for :data:`TTL`
seconds after the listener reconnected, the processes this process saw before are still expected until
they announce themselves again, so a broadcast sent while they are still reconnecting is retried or
reports them as missing, never as complete.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from c2casgiutils.redis_utils import as_text

_LOGGER = logging.getLogger(__name__)

INTERVAL = 2.0
"""Seconds between two refreshes of a process's presence entry."""
TTL = 10.0
"""Seconds an entry stays valid without refresh (a killed process is expected that long at most)."""
KEY_TTL = 10 * TTL
"""The whole hash expires when no process refreshed it for that long."""


class Peer(NamedTuple):
    """One process as it announced itself."""

    token: str
    hostname: str
    pid: int
    channels: frozenset[str]
    expires: float  # wall clock


def encode(hostname: str, pid: int, channels: Iterable[str], now: float | None = None) -> str:
    """The value of this process's presence field."""
    expires = (time.time() if now is None else now) + TTL
    return json.dumps({"hostname": hostname, "pid": pid, "channels": sorted(channels), "expires": expires})


def decode(raw: Mapping[Any, Any]) -> dict[str, Peer]:
    """Parse the hash as HGETALL returns it (invalid fields are skipped)."""
    peers: dict[str, Peer] = {}
    for raw_token, raw_value in raw.items():
        token = as_text(raw_token)
        try:
            data = json.loads(raw_value)
            peers[token] = Peer(
                token,
                str(data["hostname"]),
                int(data["pid"]),
                frozenset(str(channel) for channel in data["channels"]),
                float(data["expires"]),
            )
        except (ValueError, KeyError, TypeError):
            _LOGGER.debug("Broadcast: ignored the invalid presence entry %r", token)
    return peers


class PresenceTable:
    """This process's memory of the table: the last read, and the grace period after a reconnection."""

    def __init__(self) -> None:
        self.remembered: dict[str, Peer] = {}
        self._grace_until = 0.0  # monotonic

    def start_grace(self) -> None:
        """The listener reconnected: Redis may have lost entries; expect the remembered peers for TTL."""
        self._grace_until = time.monotonic() + TTL

    def update(self, peers: Mapping[str, Peer], now: float | None = None) -> None:
        """Remember a fresh read (the live entries only)."""
        wall = time.time() if now is None else now
        live = {token: peer for token, peer in peers.items() if peer.expires > wall}
        if time.monotonic() < self._grace_until:
            # Keep the peers not seen again yet: they may still be reconnecting.
            self.remembered = {**self.remembered, **live}
        else:
            self.remembered = live

    def forget(self, token: str) -> None:
        self.remembered.pop(token, None)

    def expected(self, peers: Mapping[str, Peer], channel: str, now: float | None = None) -> dict[str, Peer]:
        """The processes that should receive a broadcast on ``channel`` (Redis channel name)."""
        wall = time.time() if now is None else now
        result = {token: peer for token, peer in peers.items() if peer.expires > wall and channel in peer.channels}
        if time.monotonic() < self._grace_until:
            for token, peer in self.remembered.items():
                if token not in peers and channel in peer.channels:
                    result.setdefault(token, peer)
        return result

    @staticmethod
    def expired(peers: Mapping[str, Peer], now: float | None = None) -> list[str]:
        """Tokens whose entry expired long ago (to delete from the hash)."""
        wall = time.time() if now is None else now
        return [token for token, peer in peers.items() if peer.expires < wall - TTL]
