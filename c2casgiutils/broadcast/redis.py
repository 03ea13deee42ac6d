"""Redis pub/sub backend: every process of every container receives the broadcast and may answer.

How a caller knows how many answers to wait for: ``PUBLISH`` returns the number of subscribers that
received the message. Each process has one pub/sub connection, so that number is the number of processes
subscribed to the channel. The caller registers a collector before publishing, then waits until that many
answers arrived (a future resolved by the listener, no polling) or the timeout ends; each missing answer
becomes ``None`` (``MissingAnswer`` for the caller). A process that was already gone when the message was
published is not counted (Redis closed its connection); a process that received the message and then hung
or died is counted and shows as missing.

Answers come back on one answer channel per process (subscribed once at start), matched by request id.

The listener task owns the pub/sub connection: on any error it drops it, waits (exponential backoff up to
``broadcast.reconnect_delay_max``) and reconnects, subscribing again to every channel of the registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from c2casgiutils import config, redis_utils
from c2casgiutils.broadcast import _signing
from c2casgiutils.broadcast.interface import Confirmation, ProcessIdentity, RawAnswer, Registry
from c2casgiutils.broadcast.types import BroadcastUnavailableError

if TYPE_CHECKING:
    import redis.asyncio
    import redis.asyncio.client

_LOGGER = logging.getLogger(__name__)
_ANSWERS_INFIX = "__answers__."
_FIRST_RECONNECT_DELAY = 0.05


def _as_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


class _Collector:
    """The answers of one broadcast; ``done`` resolves when as many answers as receivers arrived."""

    def __init__(self) -> None:
        self.answers: list[RawAnswer] = []
        self.expected: int | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def add(self, answer: RawAnswer) -> None:
        self.answers.append(answer)
        self._check()

    def expect(self, count: int) -> None:
        self.expected = count
        self._check()

    def _check(self) -> None:
        if self.expected is not None and len(self.answers) >= self.expected and not self.done.done():
            self.done.set_result(None)


class RedisBackend:
    """Broadcast over Redis pub/sub, with one listener task per process."""

    name = "redis"

    def __init__(
        self,
        registry: Registry,
        master: redis.asyncio.Redis,
        on_connected: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._registry = registry
        self._master = master
        self._on_connected = on_connected
        self._identity = ProcessIdentity()
        self._prefix = config.settings.redis.broadcast_prefix
        token = uuid.uuid4().hex[:12]
        self._answer_channel = f"{self._prefix}{_ANSWERS_INFIX}{self._identity.hostname}.{self._identity.pid}.{token}"
        self._answer_channel_bytes = self._answer_channel.encode()
        self._pubsub: redis.asyncio.client.PubSub | None = None
        self._lock = asyncio.Lock()
        self._connected = asyncio.Event()
        self._first_attempt = asyncio.Event()
        self._confirmations: dict[bytes, list[asyncio.Future[None]]] = {}
        self._pending: dict[str, _Collector] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._listener: asyncio.Task[None] | None = None
        self._replay_guard = _signing.ReplayGuard()
        self.loop = asyncio.get_running_loop()

    # ------------------------------------------------------------------ lifecycle

    @property
    def connected(self) -> bool:
        """Whether the listener is connected and subscribed."""
        return self._connected.is_set()

    async def start(self) -> None:
        """Start the listener; wait for its first attempt (bounded), never raise when Redis is down."""
        self._listener = asyncio.create_task(self._listen_forever(), name="c2casgiutils-broadcast-listener")
        bound = self._connect_bound()
        try:
            await asyncio.wait_for(self._first_attempt.wait(), bound)
        except TimeoutError:
            _LOGGER.warning(
                "Broadcast: Redis %s did not answer within %.1fs at start-up", redis_utils.describe(), bound
            )
        if not self.connected:
            _LOGGER.warning("Broadcast: starting without Redis %s, retrying in the background", redis_utils.describe())

    async def stop(self) -> None:
        """Stop the listener, cancel running handlers, release waiting callers; bounded."""
        if self.loop is not asyncio.get_running_loop():
            # Started in another event loop (closed since, e.g. one loop per test): nothing of it can be awaited
            # from here. Shut its socket down so that Redis stops counting this listener as a receiver.
            self._shutdown_foreign_socket()
            self._tasks.clear()
            self._listener = None
            self._pubsub = None
            return
        tasks = [task for task in (self._listener, *self._tasks) if task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=self._connect_bound())
        for collector in self._pending.values():
            if not collector.done.done():
                collector.done.set_result(None)
        self._connected.clear()
        await self._drop_connection()

    def _shutdown_foreign_socket(self) -> None:
        connection = getattr(self._pubsub, "connection", None)
        writer = getattr(connection, "_writer", None)  # redis-py internals, hence every step is guarded
        transport = getattr(writer, "transport", None)
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    # ------------------------------------------------------------------ subscriptions

    def subscribe(self, channel: str) -> Confirmation:
        return self._change_subscription(channel, subscribe=True)

    def unsubscribe(self, channel: str) -> Confirmation:
        return self._change_subscription(channel, subscribe=False)

    def _change_subscription(self, channel: str, subscribe: bool) -> Confirmation:
        redis_channel = self._prefix + channel
        future: asyncio.Future[None] | None = None
        if subscribe:
            future = self.loop.create_future()
            self._confirmations.setdefault(redis_channel.encode(), []).append(future)
        task = asyncio.create_task(self._send_subscription(redis_channel, subscribe))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return Confirmation(future, self._connect_bound(), f"Subscription to broadcast channel {channel!r}")

    async def _send_subscription(self, redis_channel: str, subscribe: bool) -> None:
        # Under the lock, the listener has either not yet taken its snapshot of the registry (and will include
        # this channel) or has published its connection (and we send the command ourselves).
        async with self._lock:
            pubsub = self._pubsub
            if pubsub is None:
                return
            try:
                if subscribe:
                    await pubsub.subscribe(redis_channel)
                else:
                    await pubsub.unsubscribe(redis_channel)
            except Exception as error:  # the listener sees the broken connection and resubscribes everything
                _LOGGER.info("Broadcast: could not (un)subscribe %s now: %s", redis_channel, error)

    # ------------------------------------------------------------------ listener

    def _connect_bound(self) -> float:
        redis_settings = config.settings.redis
        return redis_settings.connect_timeout.total_seconds() + redis_settings.socket_timeout.total_seconds()

    async def _listen_forever(self) -> None:
        delay = _FIRST_RECONNECT_DELAY
        outage_logged = False
        while True:
            try:
                await self._connect_and_listen()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if self.connected or not outage_logged:
                    _LOGGER.warning(
                        "Broadcast: lost Redis %s (%s: %s), reconnecting in the background",
                        redis_utils.describe(),
                        type(error).__name__,
                        error,
                    )
                    outage_logged = True
                else:
                    _LOGGER.debug("Broadcast: Redis still unreachable: %s", error)
            if self.connected:
                delay = _FIRST_RECONNECT_DELAY
                outage_logged = False
            self._connected.clear()
            self._first_attempt.set()
            await self._drop_connection()
            maximum = config.settings.broadcast.reconnect_delay_max.total_seconds()
            await asyncio.sleep(min(delay, maximum) * random.uniform(0.8, 1.2))  # noqa: S311 - jitter only
            delay = min(delay * 2, maximum)

    async def _drop_connection(self) -> None:
        async with self._lock:
            pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            try:
                await asyncio.wait_for(pubsub.aclose(), self._connect_bound())  # type: ignore[no-untyped-call]
            except Exception:
                _LOGGER.debug("Broadcast: error while closing the pub/sub connection", exc_info=True)

    async def _connect_and_listen(self) -> None:
        pubsub = self._master.pubsub()
        async with self._lock:
            waiting = {self._answer_channel_bytes} | {(self._prefix + c).encode() for c in self._registry.channels()}
            try:
                await asyncio.wait_for(pubsub.subscribe(*waiting), self._connect_bound())
            except BaseException:
                await pubsub.aclose()  # type: ignore[no-untyped-call]
                raise
            self._pubsub = pubsub
        idle = config.settings.redis.socket_timeout.total_seconds()
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
            kind = message["type"]
            if kind == "message":
                self._on_message(_as_bytes(message["channel"]), _as_bytes(message["data"]))
            elif kind == "subscribe":
                channel = _as_bytes(message["channel"])
                for future in self._confirmations.pop(channel, []):
                    if not future.done():
                        future.set_result(None)
                if waiting:
                    waiting.discard(channel)
                    if not waiting:
                        self._set_connected()

    def _set_connected(self) -> None:
        self._connected.set()
        self._first_attempt.set()
        _LOGGER.info("Broadcast: listening on Redis %s", redis_utils.describe())
        if self._on_connected is not None:
            self._spawn(self._on_connected())

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_message(self, channel: bytes, frame: bytes) -> None:
        try:
            body = _signing.open_frame(channel, frame)
            data = json.loads(body)
            if channel == self._answer_channel_bytes:
                collector = self._pending.get(data["id"])
                if collector is not None:
                    collector.add(RawAnswer.model_validate(data["answer"]))
                return
            self._replay_guard.check(str(data["id"]), float(data["ts"]))
        except (_signing.SignatureError, ValueError, KeyError, TypeError) as error:
            _LOGGER.warning("Broadcast: ignored a message on %s: %s", channel.decode(errors="replace"), error)
            return
        name = channel.decode()[len(self._prefix) :]
        self._spawn(self._answer(name, data))

    async def _answer(self, channel: str, request: dict[str, Any]) -> None:
        params = request.get("params") or {}
        answer = await self._registry.run(channel, params, self._identity)
        reply = request.get("reply")
        if not isinstance(reply, str) or not reply.startswith(self._prefix + _ANSWERS_INFIX):
            return
        body = json.dumps({"id": request["id"], "answer": answer.model_dump()}).encode()
        try:
            await self._master.publish(reply, _signing.sign(reply, body))
        except Exception as error:
            _LOGGER.warning("Broadcast: could not send the answer on %s: %s", reply, error)

    # ------------------------------------------------------------------ publishing

    async def _publish(self, redis_channel: str, frame: bytes) -> int:
        try:
            receivers = await asyncio.wait_for(self._master.publish(redis_channel, frame), self._connect_bound())
        except Exception as error:
            if isinstance(error, asyncio.CancelledError):
                raise
            raise BroadcastUnavailableError(
                f"broadcast on {redis_channel!r} not sent: Redis {redis_utils.describe()} is unreachable "
                f"({type(error).__name__}: {error})"
            ) from error
        return int(receivers)

    async def publish(
        self,
        channel: str,
        params: Mapping[str, Any],
        expect_answers: bool,
        timeout: float,  # noqa: ASYNC109
    ) -> list[RawAnswer | None] | None:
        redis_channel = self._prefix + channel
        request_id = uuid.uuid4().hex
        request = {
            "id": request_id,
            "ts": time.time(),
            "params": params,
            "reply": self._answer_channel if expect_answers else None,
        }
        frame = _signing.sign(redis_channel, json.dumps(request).encode())
        if not expect_answers:
            await self._publish(redis_channel, frame)
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if not self.connected:
            # Right after a Redis restart the listener needs a moment to subscribe again to the answer channel.
            bound = min(timeout, self._connect_bound())
            try:
                await asyncio.wait_for(self._connected.wait(), bound)
            except TimeoutError:
                raise BroadcastUnavailableError(
                    f"broadcast on {channel!r} not sent: the listener is not connected to Redis "
                    f"{redis_utils.describe()} (waited {bound:.1f}s)"
                ) from None
        collector = _Collector()
        self._pending[request_id] = collector
        try:
            receivers = await self._publish(redis_channel, frame)
            collector.expect(receivers)
            remaining = deadline - loop.time()
            if not collector.done.done() and remaining > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(collector.done), remaining)
        finally:
            del self._pending[request_id]
        answers: list[RawAnswer | None] = list(collector.answers[:receivers])
        if len(answers) < receivers:
            _LOGGER.warning(
                "Broadcast on %r: %d of %d processes answered within %.1fs", channel, len(answers), receivers, timeout
            )
            answers.extend([None] * (receivers - len(answers)))
        return answers
