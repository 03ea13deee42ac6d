"""The Redis pub/sub transport of the broadcast: connect, back off, follow Sentinel, subscribe and confirm; publish.

The listener task owns the pub/sub connection: on any error it drops it, waits (exponential backoff up to
``broadcast.reconnect_delay_max``) and reconnects, subscribing again to every channel. When redis-py
reconnects the connection by itself (its retry, then ``PubSub.on_connect`` resubscribes) the transport sees
it through a connect callback and treats it as a reconnection: ``on_connected`` runs once the subscriptions
are confirmed again. With Sentinel, :meth:`RedisTransport.follow_master` (called every second by the
backend) moves the listener when it is not on the master Sentinel reports.

The connection has one state, :class:`ListenerState`::

    NEW --start()--> CONNECTING --every subscription confirmed--> CONNECTED
    CONNECTING --first attempt failed, or start() waited its bound--> RECONNECTING
    CONNECTED --connection lost--> RECONNECTING --every subscription confirmed--> CONNECTED
    CONNECTED --Sentinel reports another master--> MOVING --reconnect at once, no back-off--> ...
    any --halt() or abandon()--> STOPPED

One warning per outage: a loss while not connected, or soon after a reconnection, is logged at debug level.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from c2casgiutils import redis_utils
from c2casgiutils.broadcast._tasks import BackgroundTasks
from c2casgiutils.broadcast.interface import Confirmation
from c2casgiutils.broadcast.types import BroadcastUnavailableError
from c2casgiutils.redis_utils import as_bytes

if TYPE_CHECKING:
    import redis.asyncio.client

# The Redis backend's logger, one name for the records of its parts (operators set its level by that name).
_LOGGER = logging.getLogger("c2casgiutils.broadcast.redis")
_FIRST_RECONNECT_DELAY = 0.05
_SAME_OUTAGE = 5.0
"""A loss within this many seconds after a reconnection belongs to the same outage (logged once)."""


class ListenerState(enum.Enum):
    """Where the listener's pub/sub connection is."""

    NEW = "new"
    """Not started."""
    CONNECTING = "connecting"
    """The first attempt is under way: a subscription waits for its confirmation (also when NEW)."""
    CONNECTED = "connected"
    """Subscribed to every channel, confirmed by Redis."""
    RECONNECTING = "reconnecting"
    """Not connected; retrying in the background with back-off. A subscription is applied on connection."""
    MOVING = "moving"
    """Leaving a server that is no longer the master Sentinel reports, to reconnect at once."""
    STOPPED = "stopped"
    """Stopped: nothing runs, nothing will connect."""


@dataclasses.dataclass(frozen=True)
class TransportOptions:
    """The transport's settings, read once when the backend is built."""

    bound: float
    """Longest wait of one Redis call (connect timeout plus socket timeout)."""
    idle: float
    """Silence on the pub/sub connection before a PING checks it (the socket timeout)."""
    reconnect_delay_max: float
    """Longest back-off between two reconnection attempts."""
    redis: str
    """The configured Redis, without credentials, for the logs and errors."""


class RedisTransport:
    """One pub/sub listener connection per process, and publishing on the master."""

    def __init__(
        self,
        clients: redis_utils.RedisClients,
        tasks: BackgroundTasks,
        options: TransportOptions,
        *,
        channels: Callable[[], set[bytes]],
        on_message: Callable[[bytes, bytes], None],
        on_connected: Callable[[bool], None],
        on_resubscribing: Callable[[], None],
        on_channels_change: Callable[[], Awaitable[None]],
    ) -> None:
        """``channels`` gives every channel to subscribe to at a connection; the callbacks are told of messages,
        of each connection (``True``: a reconnection), of redis-py resubscribing by itself, and (awaited) when
        the channels this process handles change, before the change is sent to Redis."""
        self._clients = clients
        self._master = clients.master
        self._tasks = tasks
        self._options = options
        self.where = f"Redis {options.redis}"
        self._channels = channels
        self._on_message = on_message
        self._on_connected = on_connected
        self._on_resubscribing = on_resubscribing
        self._on_channels_change = on_channels_change
        self._state = ListenerState.NEW
        self._state_waiters: list[asyncio.Future[None]] = []
        self._pubsub: redis.asyncio.client.PubSub | None = None
        self._lock = asyncio.Lock()
        self._waiting: set[bytes] = set()  # subscriptions not confirmed yet at a (re)connection
        self._confirmations: dict[bytes, list[asyncio.Future[bool]]] = {}
        self._recovered_at: float | None = None  # last reconnection after a loss
        self.connections = 0
        self.reconnections = 0  # by redis-py itself

    # ------------------------------------------------------------------ state

    @property
    def state(self) -> ListenerState:
        return self._state

    @property
    def connected(self) -> bool:
        """Whether the listener is connected and subscribed."""
        return self._state is ListenerState.CONNECTED

    def _set_state(self, state: ListenerState) -> None:
        self._state = state
        waiters, self._state_waiters = self._state_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _wait_state(self, accept: Callable[[ListenerState], bool], timeout: float) -> bool:  # noqa: ASYNC109
        """Wait (at most ``timeout`` seconds) until the state is one ``accept`` accepts."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not accept(self._state):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            waiter = loop.create_future()
            self._state_waiters.append(waiter)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, remaining)
        return True

    async def wait_connected(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait (bounded) until the listener is connected and subscribed; False when it is not by then."""
        return await self._wait_state(lambda state: state is ListenerState.CONNECTED, timeout)

    # ------------------------------------------------------------------ lifecycle

    async def start(self, bound: float | None = None) -> None:
        """Start the listener; wait for its first attempt (bounded), never raise when Redis is down."""
        if self._state is not ListenerState.NEW:
            return  # started already
        self._set_state(ListenerState.CONNECTING)
        self._tasks.spawn(self._listen_forever(), name="c2casgiutils-broadcast-listener")
        limit = self._options.bound if bound is None else bound
        limit -= min(0.1, limit * 0.05)  # what start-up does after this takes a few milliseconds
        if not await self._wait_state(lambda state: state is not ListenerState.CONNECTING, limit):
            _LOGGER.warning("Broadcast: Redis %s did not answer within %.1fs at start-up", self._options.redis, limit)
            # From now on a subscription made while disconnected does not wait for its confirmation.
            self._set_state(ListenerState.RECONNECTING)
        if not self.connected:
            _LOGGER.warning("Broadcast: starting without Redis %s, retrying in the background", self._options.redis)

    def halt(self) -> None:
        """Stop: the state becomes STOPPED and every caller waiting for a confirmation is released."""
        self._set_state(ListenerState.STOPPED)
        self._resolve_confirmations(False)

    async def close(self) -> None:
        """Close the pub/sub connection (bounded); the listener task is cancelled by the backend before."""
        await self._drop_connection()

    def abandon(self) -> None:
        """Stop a transport of an event loop that is gone: nothing of it can be awaited from here.

        Its socket is shut down so that Redis stops counting this listener as a receiver.
        """
        connection = getattr(self._pubsub, "connection", None)
        writer = getattr(connection, "_writer", None)  # redis-py internals, hence every step is guarded
        transport = getattr(writer, "transport", None)
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._pubsub = None
        self._state = ListenerState.STOPPED  # its waiters belong to the closed loop too

    # ------------------------------------------------------------------ subscriptions

    def subscribe(self, redis_channel: str, name: str) -> Confirmation:
        """Subscribe to ``redis_channel`` (``name``: the channel as the caller knows it, for messages)."""
        return self._change_subscription(redis_channel, name, subscribe=True)

    def unsubscribe(self, redis_channel: str, name: str) -> Confirmation:
        return self._change_subscription(redis_channel, name, subscribe=False)

    def _change_subscription(self, redis_channel: str, name: str, subscribe: bool) -> Confirmation:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if self._state in (ListenerState.NEW, ListenerState.CONNECTING, ListenerState.CONNECTED):
            key = (b"subscribe:" if subscribe else b"unsubscribe:") + redis_channel.encode()
            self._confirmations.setdefault(key, []).append(future)
        else:
            future.set_result(False)  # applied on connection: nothing to wait for now
        self._tasks.spawn(self._send_subscription(redis_channel, subscribe))
        what = "Subscription to" if subscribe else "Unsubscription from"
        return Confirmation(future, self._options.bound, f"{what} broadcast channel {name!r}")

    def _resolve_confirmations(self, confirmed: bool) -> None:
        confirmations, self._confirmations = self._confirmations, {}
        for futures in confirmations.values():
            for future in futures:
                if not future.done():
                    future.set_result(confirmed)

    async def _send_subscription(self, redis_channel: str, subscribe: bool) -> None:
        if self.connected:
            # Announced before the change is sent, so that the confirmation implies it: a caller never waits for a
            # process that left the channel, and one that expects this process a moment early publishes again.
            await self._on_channels_change()
        # Under the lock, the listener has either not yet taken its snapshot of the channels (and will include
        # this one) or has published its connection (and we send the command ourselves).
        async with self._lock:
            pubsub = self._pubsub
            if pubsub is None:
                if not subscribe:  # the listener's next snapshot of the channels leaves it out
                    for future in self._confirmations.pop(b"unsubscribe:" + redis_channel.encode(), []):
                        if not future.done():
                            future.set_result(True)
                return
            try:
                if subscribe:
                    await pubsub.subscribe(redis_channel)
                else:
                    await pubsub.unsubscribe(redis_channel)
            except Exception as error:  # the listener sees the broken connection and resubscribes everything
                _LOGGER.info(
                    "Broadcast: could not (un)subscribe %s now: %s", redis_channel, redis_utils.safe_error(error)
                )

    # ------------------------------------------------------------------ publishing

    async def publish(self, redis_channel: str, frame: bytes) -> int:
        """``PUBLISH`` on the master: how many listeners received it; BroadcastUnavailableError when not sent."""
        try:
            receivers = await asyncio.wait_for(self._master.publish(redis_channel, frame), self._options.bound)
        except Exception as error:
            raise BroadcastUnavailableError(
                f"broadcast on {redis_channel!r} not sent: Redis {self._options.redis} is unreachable "
                f"({redis_utils.safe_error(error)})"
            ) from error
        return int(receivers)

    # ------------------------------------------------------------------ listener

    def _lost(self, reason: str, moving: bool = False) -> None:
        """Leave CONNECTED (to MOVING, or RECONNECTING); one warning per outage, else debug."""
        if self._state is not ListenerState.CONNECTED:
            _LOGGER.debug("Broadcast: Redis still unreachable: %s", reason)
            return
        if moving:
            self._set_state(ListenerState.MOVING)
            _LOGGER.info("Broadcast: following the new Redis master (%s)", reason)
            return
        self._set_state(ListenerState.RECONNECTING)
        if self._recovered_at is not None and time.monotonic() - self._recovered_at < _SAME_OUTAGE:
            _LOGGER.debug("Broadcast: lost Redis again soon after reconnecting: %s", reason)
        else:
            _LOGGER.warning(
                "Broadcast: lost Redis %s in process %d (%s), reconnecting in the background",
                self._options.redis,
                os.getpid(),
                reason,
            )

    async def _listen_forever(self) -> None:
        delay = _FIRST_RECONNECT_DELAY
        while True:
            try:
                await self._connect_and_listen()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if self._state in (ListenerState.CONNECTED, ListenerState.MOVING):
                    delay = _FIRST_RECONNECT_DELAY  # it was connected: a new outage starts with a short wait
                self._lost(redis_utils.safe_error(error))
            moving = self._state is ListenerState.MOVING
            self._set_state(ListenerState.RECONNECTING)
            self._resolve_confirmations(False)
            await self._drop_connection()
            if moving:
                continue
            maximum = self._options.reconnect_delay_max
            await asyncio.sleep(min(delay, maximum) * random.uniform(0.8, 1.2))  # noqa: S311 - jitter only
            delay = min(delay * 2, maximum)

    async def _drop_connection(self) -> None:
        async with self._lock:
            pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            if pubsub.connection is not None:
                pubsub.connection.deregister_connect_callback(self._on_redis_reconnect)
            try:
                await asyncio.wait_for(pubsub.aclose(), self._options.bound)
            except Exception:
                _LOGGER.debug("Broadcast: error while closing the pub/sub connection", exc_info=True)

    def _on_redis_reconnect(self, connection: Any) -> None:
        """redis-py reconnected the pub/sub connection by itself (and resubscribed): treat it as a reconnection."""
        del connection
        pubsub = self._pubsub
        self.reconnections += 1
        self._lost("the pub/sub connection was re-established by redis-py")
        self._on_resubscribing()
        channels = set(pubsub.channels) if pubsub is not None else set()
        self._waiting = {as_bytes(channel) for channel in channels} or self._channels()

    async def _connect_and_listen(self) -> None:
        pubsub = self._master.pubsub()
        async with self._lock:
            waiting = self._channels()
            self._waiting = set(waiting)
            try:
                await asyncio.wait_for(pubsub.subscribe(*waiting), self._options.bound)
            except BaseException:
                await pubsub.aclose()
                raise
            self._pubsub = pubsub
            if pubsub.connection is not None:
                pubsub.connection.register_connect_callback(self._on_redis_reconnect)
        idle = self._options.idle
        ping_sent = False
        while True:
            message = await pubsub.get_message(timeout=idle)
            if message is None:
                # Idle: a PING must come back within another idle period, or the connection is dead.
                if ping_sent:
                    raise ConnectionError(f"no answer to PING within {idle}s")
                await pubsub.ping()
                ping_sent = True
                continue
            ping_sent = False
            self._dispatch(message)

    def _dispatch(self, message: Mapping[str, Any]) -> None:
        kind = message["type"]
        if kind == "message":
            self._on_message(as_bytes(message["channel"]), as_bytes(message["data"]))
            return
        if kind not in ("subscribe", "unsubscribe"):
            return
        channel = as_bytes(message["channel"])
        for future in self._confirmations.pop(kind.encode() + b":" + channel, []):
            if not future.done():
                future.set_result(True)
        if kind == "subscribe" and self._waiting:
            self._waiting.discard(channel)
            if not self._waiting:
                self._set_connected()

    def _set_connected(self) -> None:
        reconnected = self.connections > 0
        self.connections += 1
        self._set_state(ListenerState.CONNECTED)
        _LOGGER.info("Broadcast: listening%s on Redis %s", " again" if reconnected else "", self._options.redis)
        if reconnected:
            self._recovered_at = time.monotonic()
        self._on_connected(reconnected)

    async def follow_master(self) -> None:
        """With Sentinel: when the listener is not on the master Sentinel reports, move it there (bounded)."""
        pubsub = self._pubsub
        connection = pubsub.connection if pubsub is not None else None
        if self._clients.sentinel is None or connection is None:
            return
        mismatch = await asyncio.wait_for(redis_utils.master_mismatch(self._clients, connection), self._options.bound)
        if mismatch is not None and connection.is_connected:
            self._lost(mismatch, moving=True)
            await connection.disconnect(nowait=True)
