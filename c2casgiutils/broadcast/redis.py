"""Redis pub/sub backend: every process of every container receives the broadcast and may answer.

Who should answer: every listener announces itself in a presence table in Redis (see ``_presence``):
its token and the channels it handles, refreshed every few seconds. A caller reads the table, publishes,
and compares ``PUBLISH``'s receiver count with the processes it expects: when fewer listeners received the
message (during a failover some processes are still subscribed to the old master, after a restart some
are still reconnecting) it publishes the same request again, with a new attempt number, until every
expected process answered or the timeout ends. A listener runs a request id once: a repeated attempt only
makes it send its answer again. The expected processes that did not answer are ``MissingAnswer`` entries
with their host name and pid; receivers that are not in the table are counted from ``PUBLISH`` as before.

Answers come back on one answer channel per process (subscribed once at start), matched by request id.

The listener task owns the pub/sub connection: on any error it drops it, waits (exponential backoff up to
``broadcast.reconnect_delay_max``) and reconnects, subscribing again to every channel of the registry.
When redis-py reconnects the connection by itself (its retry, then ``PubSub.on_connect`` resubscribes)
the listener sees it through a connect callback and treats it as a reconnection: the ``on_connected``
hooks run once the subscriptions are confirmed again. With Sentinel a maintenance task checks every
second that the listener is on the master Sentinel reports, and moves it (and the idle connections of
the pool) when it is not.
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
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from c2casgiutils import config, redis_utils
from c2casgiutils.broadcast import _presence, _signing
from c2casgiutils.broadcast.interface import Confirmation, ProcessIdentity, RawAnswer, Registry
from c2casgiutils.broadcast.types import BroadcastUnavailableError, MissingAnswer

if TYPE_CHECKING:
    import redis.asyncio.client

_LOGGER = logging.getLogger(__name__)
_ANSWERS_INFIX = "__answers__."
_PRESENCE_SUFFIX = "__presence__"
_FIRST_RECONNECT_DELAY = 0.05
_FIRST_REPUBLISH_DELAY = 0.1
_MAX_REPUBLISH_DELAY = 1.0
_MAINTENANCE_PERIOD = 1.0
_SAME_OUTAGE = 5.0
"""A loss within this many seconds after a reconnection belongs to the same outage (logged once)."""
_HANDLED_MAX = 10_000
_HANDLED_MAX_AGE = 300.0


def _answer_key(answer: RawAnswer) -> str:
    return answer.process or f"{answer.hostname}.{answer.pid}"


class _Collector:
    """The answers of one broadcast, by process; ``changed`` is set at each new answer."""

    def __init__(self) -> None:
        self.answers: dict[str, RawAnswer] = {}
        self.expected: dict[str, _presence.Peer] = {}
        self.receivers = 0
        self.changed = asyncio.Event()

    def add(self, answer: RawAnswer) -> None:
        key = _answer_key(answer)
        if key not in self.answers:
            self.answers[key] = answer
            self.changed.set()

    def missing_expected(self) -> list[_presence.Peer]:
        return [peer for token, peer in self.expected.items() if token not in self.answers]

    def complete(self) -> bool:
        return not self.missing_expected() and len(self.answers) >= self.receivers

    def short(self) -> bool:
        """The last publish reached fewer listeners than the processes expected, and some did not answer."""
        return self.receivers < len(self.expected) and bool(self.missing_expected())


class _Handled:
    """A request this listener received: its answer once the handler returned (sent again on a retry)."""

    __slots__ = ("answer", "received")

    def __init__(self) -> None:
        self.answer: RawAnswer | None = None
        self.received = time.monotonic()


class RedisBackend:
    """Broadcast over Redis pub/sub, with one listener task per process."""

    name = "redis"

    def __init__(
        self,
        registry: Registry,
        clients: redis_utils.RedisClients,
        on_connected: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._registry = registry
        self._clients = clients
        self._master = clients.master
        self._sentinel = clients.sentinel
        self._on_connected = on_connected
        self._identity = ProcessIdentity()
        self._prefix = config.settings.redis.broadcast_prefix
        self.token = f"{self._identity.hostname}.{self._identity.pid}.{uuid.uuid4().hex[:12]}"
        self._answer_channel = f"{self._prefix}{_ANSWERS_INFIX}{self.token}"
        self._answer_channel_bytes = self._answer_channel.encode()
        self._presence_key = f"{self._prefix}{_PRESENCE_SUFFIX}"
        self._presence = _presence.PresenceTable()
        self._pubsub: redis.asyncio.client.PubSub | None = None
        self._lock = asyncio.Lock()
        self._connected = asyncio.Event()
        self._first_attempt = asyncio.Event()
        self._waiting: set[bytes] = set()
        self._confirmations: dict[bytes, list[asyncio.Future[bool]]] = {}
        self._pending: dict[str, _Collector] = {}
        self._handled: OrderedDict[str, _Handled] = OrderedDict()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._listener: asyncio.Task[None] | None = None
        self._maintenance: asyncio.Task[None] | None = None
        self._replay_guard = _signing.ReplayGuard()
        self._in_outage = True  # not connected yet; start() reports it
        self._recovered_at: float | None = None  # last reconnection after a loss
        self._was_connected = False
        self._started = False
        self._moving = False
        self.reconnections = 0
        self.republished = 0
        self._retired: set[str] = set()
        self.loop = asyncio.get_running_loop()

    # ------------------------------------------------------------------ lifecycle

    @property
    def connected(self) -> bool:
        """Whether the listener is connected and subscribed."""
        return self._connected.is_set()

    async def start(self, bound: float | None = None) -> None:
        """Start the listener; wait for its first attempt (bounded), never raise when Redis is down."""
        self._listener = asyncio.create_task(self._listen_forever(), name="c2casgiutils-broadcast-listener")
        self._maintenance = asyncio.create_task(self._maintain(), name="c2casgiutils-broadcast-maintenance")
        limit = self._connect_bound() if bound is None else bound
        limit -= min(0.1, limit * 0.05)  # what start-up does after this takes a few milliseconds
        try:
            await asyncio.wait_for(self._first_attempt.wait(), limit)
        except TimeoutError:
            _LOGGER.warning(
                "Broadcast: Redis %s did not answer within %.1fs at start-up", redis_utils.describe(), limit
            )
        self._started = True  # from now on a subscription made while disconnected does not wait
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
            self._maintenance = None
            self._pubsub = None
            return
        tasks = [task for task in (self._listener, self._maintenance, *self._tasks) if task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=self._connect_bound())
        for collector in self._pending.values():
            collector.changed.set()
        self._pending.clear()
        was_connected = self.connected
        self._connected.clear()
        self._resolve_confirmations(False)
        if was_connected:
            # Leave the presence table so that nobody waits for this process (best effort, bounded).
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._master.hdel(self._presence_key, self.token), self._connect_bound())
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
        future: asyncio.Future[bool] = self.loop.create_future()
        if (self._first_attempt.is_set() or self._started) and not self.connected:
            future.set_result(False)  # applied on connection: nothing to wait for now
        else:
            key = (b"subscribe:" if subscribe else b"unsubscribe:") + redis_channel.encode()
            self._confirmations.setdefault(key, []).append(future)
        self._spawn(self._send_subscription(redis_channel, subscribe))
        what = "Subscription to" if subscribe else "Unsubscription from"
        return Confirmation(future, self._connect_bound(), f"{what} broadcast channel {channel!r}")

    def _resolve_confirmations(self, confirmed: bool) -> None:
        confirmations, self._confirmations = self._confirmations, {}
        for futures in confirmations.values():
            for future in futures:
                if not future.done():
                    future.set_result(confirmed)

    async def _send_subscription(self, redis_channel: str, subscribe: bool) -> None:
        if not subscribe and self.connected:
            await self._announce_logged()  # leave the presence of the channel before leaving the channel
        # Under the lock, the listener has either not yet taken its snapshot of the registry (and will include
        # this channel) or has published its connection (and we send the command ourselves).
        async with self._lock:
            pubsub = self._pubsub
            if pubsub is None:
                if not subscribe:  # the listener's next snapshot of the registry leaves it out
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
                return
        if subscribe and self.connected:
            await self._announce_logged()

    # ------------------------------------------------------------------ presence

    def _presence_value(self) -> str:
        channels = [self._prefix + channel for channel in self._registry.channels()]
        return _presence.encode(self._identity.hostname, self._identity.pid, channels)

    async def _announce(self) -> None:
        """Refresh this process's presence entry and read the table (one round trip)."""
        async with self._master.pipeline(transaction=False) as pipe:
            pipe.hset(self._presence_key, self.token, self._presence_value())
            pipe.expire(self._presence_key, int(_presence.KEY_TTL))
            pipe.hgetall(self._presence_key)
            results = await asyncio.wait_for(pipe.execute(), self._connect_bound())
        peers = _presence.decode(results[2])
        self._presence.update(peers)
        expired = _presence.PresenceTable.expired(peers)
        if expired:
            await asyncio.wait_for(self._master.hdel(self._presence_key, *expired), self._connect_bound())

    async def _announce_logged(self) -> None:
        try:
            await self._announce()
        except Exception as error:
            _LOGGER.debug("Broadcast: could not refresh the presence entry: %s", redis_utils.safe_error(error))

    async def _read_presence(self) -> dict[str, _presence.Peer]:
        try:
            raw = await asyncio.wait_for(self._master.hgetall(self._presence_key), self._connect_bound())
        except Exception as error:
            if isinstance(error, asyncio.CancelledError):
                raise
            _LOGGER.debug("Broadcast: could not read the presence table: %s", redis_utils.safe_error(error))
            return dict(self._presence.remembered)
        peers = _presence.decode(raw)
        self._presence.update(peers)
        return peers

    # ------------------------------------------------------------------ listener

    def _connect_bound(self) -> float:
        return redis_utils.write_bound()  # the same bound: connect timeout plus socket timeout

    def _note_lost(self, reason: str) -> None:
        """One warning per outage: a loss soon after a reconnection is the same outage (debug)."""
        if self._in_outage:
            _LOGGER.debug("Broadcast: Redis still unreachable: %s", reason)
            return
        self._in_outage = True
        if self._moving:
            _LOGGER.info("Broadcast: following the new Redis master (%s)", reason)
        elif self._recovered_at is not None and time.monotonic() - self._recovered_at < _SAME_OUTAGE:
            _LOGGER.debug("Broadcast: lost Redis again soon after reconnecting: %s", reason)
        else:
            _LOGGER.warning(
                "Broadcast: lost Redis %s in process %d (%s), reconnecting in the background",
                redis_utils.describe(),
                self._identity.pid,
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
                self._note_lost(redis_utils.safe_error(error))
            if self.connected:
                delay = _FIRST_RECONNECT_DELAY
            self._connected.clear()
            self._first_attempt.set()
            self._resolve_confirmations(False)
            await self._drop_connection()
            if self._moving:
                self._moving = False
                continue
            maximum = config.settings.broadcast.reconnect_delay_max.total_seconds()
            await asyncio.sleep(min(delay, maximum) * random.uniform(0.8, 1.2))  # noqa: S311 - jitter only
            delay = min(delay * 2, maximum)

    async def _drop_connection(self) -> None:
        async with self._lock:
            pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            if pubsub.connection is not None:
                pubsub.connection.deregister_connect_callback(self._on_redis_reconnect)
            try:
                await asyncio.wait_for(pubsub.aclose(), self._connect_bound())
            except Exception:
                _LOGGER.debug("Broadcast: error while closing the pub/sub connection", exc_info=True)

    def _on_redis_reconnect(self, connection: Any) -> None:
        """redis-py reconnected the pub/sub connection by itself (and resubscribed): treat it as a reconnection."""
        del connection
        pubsub = self._pubsub
        self.reconnections += 1
        self._note_lost("the pub/sub connection was re-established by redis-py")
        self._connected.clear()
        self._presence.start_grace()
        channels = set(pubsub.channels) if pubsub is not None else set()
        self._waiting = {redis_utils.as_bytes(channel) for channel in channels} or {self._answer_channel_bytes}

    async def _connect_and_listen(self) -> None:
        pubsub = self._master.pubsub()
        async with self._lock:
            waiting = {self._answer_channel_bytes} | {(self._prefix + c).encode() for c in self._registry.channels()}
            self._waiting = set(waiting)
            try:
                await asyncio.wait_for(pubsub.subscribe(*waiting), self._connect_bound())
            except BaseException:
                await pubsub.aclose()
                raise
            self._pubsub = pubsub
            if pubsub.connection is not None:
                pubsub.connection.register_connect_callback(self._on_redis_reconnect)
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
            self._dispatch(message)

    def _dispatch(self, message: Mapping[str, Any]) -> None:
        kind = message["type"]
        if kind == "message":
            self._on_message(redis_utils.as_bytes(message["channel"]), redis_utils.as_bytes(message["data"]))
            return
        if kind not in ("subscribe", "unsubscribe"):
            return
        channel = redis_utils.as_bytes(message["channel"])
        for future in self._confirmations.pop(kind.encode() + b":" + channel, []):
            if not future.done():
                future.set_result(True)
        if kind == "subscribe" and self._waiting:
            self._waiting.discard(channel)
            if not self._waiting:
                self._set_connected()

    def _set_connected(self) -> None:
        reconnected = self._was_connected
        self._connected.set()
        self._first_attempt.set()
        if self._in_outage:
            again = " again" if reconnected else ""
            _LOGGER.info("Broadcast: listening%s on Redis %s", again, redis_utils.describe())
        self._in_outage = False
        self._moving = False
        if reconnected:
            self._recovered_at = time.monotonic()
            self._presence.start_grace()
        self._was_connected = True
        self._spawn(self._after_connection())

    def retire(self, token: str) -> None:
        """Remove ``token`` (a backend of this process that could not leave cleanly) from the presence table."""
        if token != self.token:
            self._retired.add(token)
            self._presence.forget(token)

    async def _after_connection(self) -> None:
        if self._retired:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._master.hdel(self._presence_key, *self._retired), self._connect_bound())
                self._retired.clear()
        await self._announce_logged()
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
                if self._sentinel is not None:
                    await asyncio.wait_for(self._follow_master(), self._connect_bound())
                if self.loop.time() >= next_announce:
                    await self._announce()
                    next_announce = self.loop.time() + _presence.INTERVAL
            except asyncio.CancelledError:
                raise
            except Exception as error:
                _LOGGER.debug("Broadcast: maintenance failed: %s", redis_utils.safe_error(error))

    async def _follow_master(self) -> None:
        pubsub = self._pubsub
        connection = pubsub.connection if pubsub is not None else None
        if self._sentinel is None or connection is None:
            return
        mismatch = await redis_utils.master_mismatch(self._clients, connection)
        if mismatch is not None and connection.is_connected:
            self._moving = True
            self._note_lost(mismatch)
            await connection.disconnect(nowait=True)

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
            request_id = str(data["id"])
            attempt = int(data.get("attempt") or 0)
            self._replay_guard.check(request_id if attempt == 0 else f"{request_id}#{attempt}", float(data["ts"]))
        except (_signing.SignatureError, ValueError, KeyError, TypeError) as error:
            _LOGGER.warning("Broadcast: ignored a message on %s: %s", channel.decode(errors="replace"), error)
            return
        handled = self._handled.get(request_id)
        if handled is not None:
            # A repeated attempt of a request run here already: send the answer again, do not run it twice.
            if handled.answer is not None:
                self._spawn(self._send_answer(data.get("reply"), request_id, handled.answer))
            return
        self._remember(request_id)
        name = channel.decode()[len(self._prefix) :]
        self._spawn(self._answer(name, data))

    def _remember(self, request_id: str) -> None:
        self._handled[request_id] = _Handled()
        now = time.monotonic()
        while self._handled:
            oldest = next(iter(self._handled.values()))
            if len(self._handled) > _HANDLED_MAX or now - oldest.received > _HANDLED_MAX_AGE:
                self._handled.popitem(last=False)
            else:
                break

    async def _answer(self, channel: str, request: dict[str, Any]) -> None:
        params = request.get("params") or {}
        answer = await self._registry.run(channel, params, self._identity)
        answer.process = self.token
        handled = self._handled.get(str(request["id"]))
        if handled is not None:
            handled.answer = answer
        await self._send_answer(request.get("reply"), str(request["id"]), answer)

    async def _send_answer(self, reply: Any, request_id: str, answer: RawAnswer) -> None:
        if not isinstance(reply, str) or not reply.startswith(self._prefix + _ANSWERS_INFIX):
            return
        body = json.dumps({"id": request_id, "answer": answer.model_dump()}).encode()
        try:
            await asyncio.wait_for(self._master.publish(reply, _signing.sign(reply, body)), self._connect_bound())
        except Exception as error:
            if isinstance(error, asyncio.CancelledError):
                raise
            _LOGGER.warning("Broadcast: could not send the answer on %s: %s", reply, redis_utils.safe_error(error))

    # ------------------------------------------------------------------ publishing

    async def _publish(self, redis_channel: str, frame: bytes) -> int:
        try:
            receivers = await asyncio.wait_for(self._master.publish(redis_channel, frame), self._connect_bound())
        except Exception as error:
            if isinstance(error, asyncio.CancelledError):
                raise
            raise BroadcastUnavailableError(
                f"broadcast on {redis_channel!r} not sent: Redis {redis_utils.describe()} is unreachable "
                f"({redis_utils.safe_error(error)})"
            ) from error
        return int(receivers)

    @staticmethod
    def _frame(redis_channel: str, request: dict[str, Any], attempt: int) -> bytes:
        body = {**request, "attempt": attempt} if attempt else request
        return _signing.sign(redis_channel, json.dumps(body).encode())

    async def _republish(self, redis_channel: str, request: dict[str, Any], attempt: int) -> int | None:
        self.republished += 1
        try:
            return await self._publish(redis_channel, self._frame(redis_channel, request, attempt))
        except BroadcastUnavailableError as error:
            _LOGGER.debug(
                "Broadcast: attempt %d on %s not sent: %s", attempt, redis_channel, redis_utils.safe_error(error)
            )
            return None

    async def _deliver_in_background(self, redis_channel: str, request: dict[str, Any], receivers: int) -> None:
        """Without answers: publish again while fewer listeners than expected received it (bounded)."""
        deadline = self.loop.time() + config.settings.broadcast.timeout.total_seconds()
        delay = _FIRST_REPUBLISH_DELAY
        attempt = 0
        expected = self._presence.expected(await self._read_presence(), redis_channel)
        while receivers < len(expected) and self.loop.time() + delay < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_REPUBLISH_DELAY)
            attempt += 1
            expected = self._presence.expected(await self._read_presence(), redis_channel)
            reached = await self._republish(redis_channel, request, attempt)
            if reached is not None:  # 0 is a count too; None: not sent, keep the last count
                receivers = reached
        if receivers < len(expected):
            _LOGGER.warning(
                "Broadcast on %r reached %d of the %d processes expected", redis_channel, receivers, len(expected)
            )

    async def publish(
        self,
        channel: str,
        params: Mapping[str, Any],
        expect_answers: bool,
        timeout: float,  # noqa: ASYNC109
    ) -> list[RawAnswer | MissingAnswer | None] | None:
        redis_channel = self._prefix + channel
        request_id = uuid.uuid4().hex
        request = {
            "id": request_id,
            "ts": time.time(),
            "params": params,
            "reply": self._answer_channel if expect_answers else None,
        }
        if not expect_answers:
            receivers = await self._publish(redis_channel, self._frame(redis_channel, request, 0))
            self._spawn(self._deliver_in_background(redis_channel, request, receivers))
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
        presence = asyncio.ensure_future(self._read_presence())  # concurrently with the publish: one round trip
        try:
            try:
                collector.receivers = await self._publish(redis_channel, self._frame(redis_channel, request, 0))
            except BaseException:
                presence.cancel()
                raise
            collector.expected = self._presence.expected(await presence, redis_channel)
            await self._collect(collector, redis_channel, request, deadline)
        finally:
            self._pending.pop(request_id, None)
        return self._result(collector, channel, timeout)

    async def _collect(
        self, collector: _Collector, redis_channel: str, request: dict[str, Any], deadline: float
    ) -> None:
        loop = asyncio.get_running_loop()
        delay = _FIRST_REPUBLISH_DELAY
        next_attempt = loop.time() + delay
        attempt = 0
        while not collector.complete():
            now = loop.time()
            if now >= deadline or not self._pending:
                return
            short = collector.short()
            until = min(deadline, next_attempt) if short else deadline
            collector.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(collector.changed.wait(), max(0.0, until - now))
            if short and not collector.complete() and next_attempt <= loop.time() < deadline:
                attempt += 1
                try:
                    peers, receivers = await asyncio.wait_for(
                        asyncio.gather(self._read_presence(), self._republish(redis_channel, request, attempt)),
                        deadline - loop.time(),
                    )
                except TimeoutError:
                    return
                collector.expected = self._presence.expected(peers, redis_channel)
                if receivers is not None:
                    collector.receivers = receivers
                delay = min(delay * 2, _MAX_REPUBLISH_DELAY)
                next_attempt = loop.time() + delay

    @staticmethod
    def _result(collector: _Collector, channel: str, timeout: float) -> list[RawAnswer | MissingAnswer | None]:
        answers: list[RawAnswer | MissingAnswer | None] = list(collector.answers.values())
        missing = collector.missing_expected()
        message = f"no answer within {timeout:.1f}s"
        answers.extend(MissingAnswer(message=message, hostname=peer.hostname, pid=peer.pid) for peer in missing)
        unknown = max(0, collector.receivers - len(collector.answers) - len(missing))
        answers.extend([None] * unknown)
        if missing or unknown:
            _LOGGER.warning(
                "Broadcast on %r: %d answers within %.1fs, %d expected processes and %d other receivers missing",
                channel,
                len(collector.answers),
                timeout,
                len(missing),
                unknown,
            )
        return answers
