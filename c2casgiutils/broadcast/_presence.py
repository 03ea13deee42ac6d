"""Which processes should answer a broadcast: the presence table every listener keeps up to date.

Each process's listener writes (:class:`Presence`), in the Redis hash ``<prefix>__presence__``, one field per
process (its token ``<host>.<pid>.<random>``) holding ``{"hostname", "pid", "channels", "expires"}`` and
refreshes it every :data:`INTERVAL` seconds while it is connected (``expires`` is :data:`TTL` seconds ahead,
wall clock). A process leaving cleanly deletes its field; a killed one stops refreshing and is forgotten when
its entry expires.

A caller reads the table before publishing: the live entries that list the channel are the processes it
expects an answer from. Redis may have lost the table (a restart without persistence): for :data:`TTL`
seconds after the listener reconnected, the processes this process saw before are still expected until
they announce themselves again, so a broadcast sent while they are still reconnecting is retried or
reports them as missing, never as complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from c2casgiutils import redis_utils

if TYPE_CHECKING:
    import redis.asyncio

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
        token = redis_utils.as_text(raw_token)
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


class Presence:
    """This process's entry in the Redis hash, and the table as this process knows it (:class:`PresenceTable`).

    Every Redis call is bounded by ``bound`` (the connect plus the socket timeout): presence is maintenance, it
    never holds up a broadcast longer than a publish may take.
    """

    def __init__(
        self, master: redis.asyncio.Redis, key: str, token: str, entry: Callable[[], str], bound: float
    ) -> None:
        self.table = PresenceTable()
        self._master = master
        self._key = key
        self._token = token
        self._entry = entry
        self._bound = bound
        self._retired: set[str] = set()
        # One announcement at a time, each written with the channels of its time: two concurrent ones (a
        # subscription, then an unsubscription) may otherwise reach Redis in the other order on two connections.
        self._announcing = asyncio.Lock()

    async def announce(self) -> None:
        """Refresh this process's entry and read the table (one round trip); delete entries expired long ago."""
        async with self._announcing, self._master.pipeline(transaction=False) as pipe:
            pipe.hset(self._key, self._token, self._entry())
            pipe.expire(self._key, int(KEY_TTL))
            pipe.hgetall(self._key)
            results = await asyncio.wait_for(pipe.execute(), self._bound)
        peers = decode(results[2])
        self.table.update(peers)
        expired = PresenceTable.expired(peers)
        if expired:
            await asyncio.wait_for(self._master.hdel(self._key, *expired), self._bound)

    async def announce_logged(self) -> None:
        """:meth:`announce`, a failure logged (the next refresh retries)."""
        try:
            await self.announce()
        except Exception as error:
            _LOGGER.debug("Broadcast: could not refresh the presence entry: %s", redis_utils.safe_error(error))

    async def read(self) -> dict[str, Peer]:
        """The table as Redis has it now; the last read when Redis cannot be reached (never raises)."""
        try:
            raw = await asyncio.wait_for(self._master.hgetall(self._key), self._bound)
        except Exception as error:
            _LOGGER.debug("Broadcast: could not read the presence table: %s", redis_utils.safe_error(error))
            return dict(self.table.remembered)
        peers = decode(raw)
        self.table.update(peers)
        return peers

    async def expected(self, channel: str) -> dict[str, Peer]:
        """The processes that should receive a broadcast on ``channel`` (Redis channel name), read now."""
        return self.table.expected(await self.read(), channel)

    async def leave(self) -> None:
        """Delete this process's entry, so that nobody waits for it (best effort)."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._master.hdel(self._key, self._token), self._bound)

    def retire(self, token: str) -> None:
        """Forget ``token`` (a backend of this process that could not leave); deleted at the next connection."""
        if token != self._token:
            self._retired.add(token)
            self.table.forget(token)

    async def remove_retired(self) -> None:
        """Delete the entries of the retired tokens (best effort: kept for the next connection on failure)."""
        if self._retired:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._master.hdel(self._key, *self._retired), self._bound)
                self._retired.clear()
