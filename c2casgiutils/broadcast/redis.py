"""Redis pub/sub backend: every process of every container receives the broadcast and may answer.

A thin assembly of its parts, each in its own module:

- ``_transport``: the listener connection (connect, back off, follow Sentinel, subscribe and confirm, one
  :class:`~c2casgiutils.broadcast._transport.ListenerState`) and ``PUBLISH``;
- ``_calls``: the call protocol (requests, answers, republish, collection), which knows no Redis;
- ``_presence``: which processes should answer, from a table every listener keeps up to date in Redis;
- ``_signing``: the HMAC of every frame and the replay guard.

This module builds them from the settings (once, here), connects them, and runs the maintenance: every
second it follows the Sentinel master, every few seconds it refreshes this process's presence entry.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from c2casgiutils import config, redis_utils
from c2casgiutils.broadcast import _presence
from c2casgiutils.broadcast._calls import CallOptions, CallProtocol
from c2casgiutils.broadcast._signing import ReplayGuard, Signer
from c2casgiutils.broadcast._tasks import BackgroundTasks
from c2casgiutils.broadcast._transport import ListenerState, RedisTransport, TransportOptions
from c2casgiutils.broadcast.interface import Backend, Confirmation, ProcessIdentity, RawAnswer, Registry
from c2casgiutils.broadcast.types import BroadcastError, MissingAnswer

_LOGGER = logging.getLogger(__name__)
_PRESENCE_SUFFIX = "__presence__"
_MAINTENANCE_PERIOD = 1.0


class RedisBackend:
    """Broadcast over Redis pub/sub, with one listener per process."""

    name = "redis"

    def __init__(
        self,
        registry: Registry,
        clients: redis_utils.RedisClients,
        on_connected: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Build the parts; the settings are read here, once (prefix, timeouts, secret)."""
        self.loop = asyncio.get_running_loop()
        self._registry = registry
        self._clients = clients
        self._on_connected = on_connected
        self._identity = ProcessIdentity()
        self.token = f"{self._identity.hostname}.{self._identity.pid}.{uuid.uuid4().hex[:12]}"
        self._bound = redis_utils.write_bound()  # connect plus socket timeout: the bound of every Redis call
        transport_options = TransportOptions(
            bound=self._bound,
            idle=config.settings.redis.socket_timeout.total_seconds(),
            reconnect_delay_max=config.settings.broadcast.reconnect_delay_max.total_seconds(),
            redis=redis_utils.describe(),
        )
        options = CallOptions(
            prefix=config.settings.redis.broadcast_prefix,
            bound=self._bound,
            delivery_timeout=config.settings.broadcast.timeout.total_seconds(),
        )
        self._prefix = options.prefix
        self._tasks = BackgroundTasks()
        self._presence = _presence.Presence(
            clients.master,
            f"{self._prefix}{_PRESENCE_SUFFIX}",
            self.token,
            self._presence_entry,
            self._bound,
        )
        self._transport = RedisTransport(
            clients,
            self._tasks,
            transport_options,
            channels=self._channels,
            on_message=self._receive,
            on_connected=self._connected,
            on_resubscribing=self._presence.table.start_grace,
            on_channels_change=self._presence.announce_logged,
        )
        signer = Signer.from_settings()
        self._calls = CallProtocol(
            registry,
            identity=self._identity,
            token=self.token,
            transport=self._transport,
            roster=self._presence,
            signer=signer,
            replay_guard=ReplayGuard(signed=signer.signed),
            tasks=self._tasks,
            options=options,
        )
        self._answer_channel_bytes = self._calls.answer_channel.encode()

    @classmethod
    def from_settings(cls, registry: Registry, on_connected: Callable[[], Awaitable[None]] | None = None) -> Backend:
        """The backend of the configured Redis (its clients for the running event loop)."""
        clients = redis_utils.get()
        if clients is None:
            raise BroadcastError("Redis is not configured (C2C__REDIS__URL or C2C__REDIS__SENTINELS)")
        return cls(registry, clients, on_connected)

    # ------------------------------------------------------------------ state

    @property
    def connected(self) -> bool:
        """Whether the listener is connected and subscribed."""
        return self._transport.connected

    @property
    def state(self) -> ListenerState:
        """The state of the listener connection."""
        return self._transport.state

    @property
    def reconnections(self) -> int:
        """How many times redis-py reconnected the listener by itself."""
        return self._transport.reconnections

    @property
    def republished(self) -> int:
        """How many times a request was published again because listeners were missing."""
        return self._calls.republished

    def is_usable(self) -> bool:
        """Started (or startable) in the running event loop and not stopped."""
        return self.loop is asyncio.get_running_loop() and self.state is not ListenerState.STOPPED

    def take_over(self, previous: Backend) -> None:
        """A Redis backend of a closed event loop could not leave the presence table: remove its entry."""
        if isinstance(previous, RedisBackend) and previous.loop is not self.loop:
            self.retire(previous.token)

    def retire(self, token: str) -> None:
        """Remove ``token`` (a backend of this process that could not leave cleanly) from the presence table."""
        self._presence.retire(token)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the listener and the maintenance; wait for the first attempt (bounded), never raise."""
        if self.state is not ListenerState.NEW:
            return  # started already
        self._tasks.spawn(self._maintain(), name="c2casgiutils-broadcast-maintenance")
        await self._transport.start()

    async def stop(self) -> None:
        """Stop the listener, cancel running handlers, release waiting callers; bounded."""
        if self.loop is not asyncio.get_running_loop():
            # Started in another event loop (closed since, e.g. one loop per test): nothing of it can be awaited.
            self._transport.abandon()
            self._tasks.forget()
            return
        tasks = self._tasks.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=self._bound)
        self._calls.release()
        was_connected = self.connected
        self._transport.halt()
        if was_connected:
            await self._presence.leave()  # so that nobody waits for this process
        await self._transport.close()

    # ------------------------------------------------------------------ wiring

    def _channels(self) -> set[bytes]:
        """Every channel the listener subscribes to: this process's answer channel and the registry's."""
        return {self._answer_channel_bytes} | {(self._prefix + c).encode() for c in self._registry.channels()}

    def _presence_entry(self) -> str:
        channels = [self._prefix + channel for channel in self._registry.channels()]
        return _presence.encode(self._identity.hostname, self._identity.pid, channels)

    def _receive(self, channel: bytes, frame: bytes) -> None:
        self._calls.receive(channel, frame)

    def _connected(self, reconnected: bool) -> None:
        if reconnected:
            self._presence.table.start_grace()  # Redis may have lost entries: expect the peers seen before
        self._tasks.spawn(self._after_connection())

    async def _after_connection(self) -> None:
        await self._presence.remove_retired()
        await self._presence.announce_logged()
        if self._on_connected is not None:
            await self._on_connected()

    async def _maintain(self) -> None:
        """Every second: follow the Sentinel master; every few seconds: refresh the presence entry."""
        next_announce = 0.0
        while True:
            await asyncio.sleep(_MAINTENANCE_PERIOD)
            if not self.connected:
                continue
            try:
                await self._transport.follow_master()
                if self.loop.time() >= next_announce:
                    await self._presence.announce()
                    next_announce = self.loop.time() + _presence.INTERVAL
            except asyncio.CancelledError:
                raise
            except Exception as error:
                _LOGGER.debug("Broadcast: maintenance failed: %s", redis_utils.safe_error(error))

    # ------------------------------------------------------------------ the interface

    def subscribe(self, channel: str) -> Confirmation:
        return self._transport.subscribe(self._prefix + channel, channel)

    def unsubscribe(self, channel: str) -> Confirmation:
        return self._transport.unsubscribe(self._prefix + channel, channel)

    async def publish(
        self,
        channel: str,
        params: Mapping[str, Any],
        expect_answers: bool,
        timeout: float,  # noqa: ASYNC109
    ) -> list[RawAnswer | MissingAnswer | None] | None:
        return await self._calls.publish(channel, params, expect_answers, timeout)
