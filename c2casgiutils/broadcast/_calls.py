"""The call protocol of the broadcast: requests, answers, republish and collection, over any pub/sub transport.

A request is a signed JSON frame ``{"id", "ts", "params", "reply", "attempt"}`` published on the channel;
every listener runs its handler once per request id and publishes its answer on the caller's answer channel
(``reply``), matched there by request id. The caller knows who should answer from the presence table
(:class:`Roster`) and compares it with the number of listeners ``PUBLISH`` reached: while fewer received it
(during a failover some processes are still subscribed to the old master, after a restart some are still
reconnecting) it publishes the same request again with a new attempt number, until every expected process
answered or the timeout ends. A repeated attempt only makes a listener send its answer again. The expected
processes that did not answer are ``MissingAnswer`` entries with their host name and pid; receivers that are
not in the table are counted from ``PUBLISH``.

Nothing here knows Redis: the transport and the roster come in through the constructor (the Redis backend's,
or an in-memory fake in the tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Protocol

from c2casgiutils.broadcast._presence import Peer
from c2casgiutils.broadcast._signing import ReplayGuard, SignatureError, Signer
from c2casgiutils.broadcast._tasks import BackgroundTasks
from c2casgiutils.broadcast.interface import ProcessIdentity, RawAnswer, Registry
from c2casgiutils.broadcast.types import BroadcastUnavailableError, MissingAnswer

# The Redis backend's logger, one name for the records of its parts (operators set its level by that name).
_LOGGER = logging.getLogger("c2casgiutils.broadcast.redis")
ANSWERS_INFIX = "__answers__."
_FIRST_REPUBLISH_DELAY = 0.1
_MAX_REPUBLISH_DELAY = 1.0
_HANDLED_MAX = 10_000
_HANDLED_MAX_AGE = 300.0


class Transport(Protocol):
    """What the call protocol needs from a pub/sub transport."""

    where: str
    """What the transport reaches, for messages (``Redis redis://host:6379/0``)."""

    @property
    def connected(self) -> bool:
        """Whether the answers can come back now (the listener is subscribed)."""

    async def wait_connected(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait (at most ``timeout`` seconds) for the listener to be subscribed; whether it is."""

    async def publish(self, channel: str, frame: bytes) -> int:
        """Send ``frame`` on ``channel``: how many listeners received it; BroadcastUnavailableError when not sent."""


class Roster(Protocol):
    """Who should receive a broadcast (the presence table)."""

    async def expected(self, channel: str) -> dict[str, Peer]:
        """The processes that should receive a broadcast on ``channel``, by token (never raises)."""


@dataclasses.dataclass(frozen=True)
class CallOptions:
    """The protocol's settings, read once when the backend is built."""

    prefix: str
    """Prefix of every channel name (``C2C__REDIS__BROADCAST_PREFIX``)."""
    bound: float
    """Longest wait for the listener to be connected, and for an answer to be sent."""
    delivery_timeout: float
    """How long a broadcast without answers is published again while listeners are missing."""


def _answer_key(answer: RawAnswer) -> str:
    return answer.process or f"{answer.hostname}.{answer.pid}"


class _Collector:
    """The answers of one broadcast, by process; ``changed`` is set at each new answer."""

    def __init__(self) -> None:
        self.answers: dict[str, RawAnswer] = {}
        self.expected: dict[str, Peer] = {}
        self.receivers = 0
        self.changed = asyncio.Event()

    def add(self, answer: RawAnswer) -> None:
        key = _answer_key(answer)
        if key not in self.answers:
            self.answers[key] = answer
            self.changed.set()

    def missing_expected(self) -> list[Peer]:
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


class CallProtocol:
    """Requests and answers of one process over a transport."""

    def __init__(
        self,
        registry: Registry,
        *,
        identity: ProcessIdentity,
        token: str,
        transport: Transport,
        roster: Roster,
        signer: Signer,
        replay_guard: ReplayGuard,
        tasks: BackgroundTasks,
        options: CallOptions,
    ) -> None:
        self._registry = registry
        self._identity = identity
        self._token = token
        self._transport = transport
        self._roster = roster
        self._signer = signer
        self._replay_guard = replay_guard
        self._tasks = tasks
        self._options = options
        self._prefix = options.prefix
        self.answer_channel = f"{options.prefix}{ANSWERS_INFIX}{token}"
        self._answer_channel_bytes = self.answer_channel.encode()
        self._pending: dict[str, _Collector] = {}
        self._handled: OrderedDict[str, _Handled] = OrderedDict()
        self.republished = 0

    def release(self) -> None:
        """Stop: every caller waiting for answers gets what came so far."""
        for collector in self._pending.values():
            collector.changed.set()
        self._pending.clear()

    # ------------------------------------------------------------------ receiving

    def receive(self, channel: bytes, frame: bytes) -> None:
        """A frame from the transport: an answer to one of our requests, or a request to run here."""
        try:
            body = self._signer.open(channel, frame)
            data = json.loads(body)
            if channel == self._answer_channel_bytes:
                collector = self._pending.get(data["id"])
                if collector is not None:
                    collector.add(RawAnswer.model_validate(data["answer"]))
                return
            request_id = str(data["id"])
            attempt = int(data.get("attempt") or 0)
            self._replay_guard.check(request_id if attempt == 0 else f"{request_id}#{attempt}", float(data["ts"]))
        except (SignatureError, ValueError, KeyError, TypeError) as error:
            _LOGGER.warning("Broadcast: ignored a message on %s: %s", channel.decode(errors="replace"), error)
            return
        handled = self._handled.get(request_id)
        if handled is not None:
            # A repeated attempt of a request run here already: send the answer again, do not run it twice.
            if handled.answer is not None:
                self._tasks.spawn(self._send_answer(data.get("reply"), request_id, handled.answer))
            return
        self._remember(request_id)
        name = channel.decode()[len(self._prefix) :]
        self._tasks.spawn(self._answer(name, data))

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
        answer.process = self._token
        handled = self._handled.get(str(request["id"]))
        if handled is not None:
            handled.answer = answer
        await self._send_answer(request.get("reply"), str(request["id"]), answer)

    async def _send_answer(self, reply: Any, request_id: str, answer: RawAnswer) -> None:
        if not isinstance(reply, str) or not reply.startswith(self._prefix + ANSWERS_INFIX):
            return
        body = json.dumps({"id": request_id, "answer": answer.model_dump()}).encode()
        try:
            await self._transport.publish(reply, self._signer.sign(reply, body))
        except BroadcastUnavailableError as error:
            _LOGGER.warning("Broadcast: could not send the answer on %s: %s", reply, error)

    # ------------------------------------------------------------------ publishing

    def _frame(self, channel: str, request: dict[str, Any], attempt: int) -> bytes:
        body = {**request, "attempt": attempt} if attempt else request
        return self._signer.sign(channel, json.dumps(body).encode())

    async def _republish(self, channel: str, request: dict[str, Any], attempt: int) -> int | None:
        self.republished += 1
        try:
            return await self._transport.publish(channel, self._frame(channel, request, attempt))
        except BroadcastUnavailableError as error:
            _LOGGER.debug("Broadcast: attempt %d on %s not sent: %s", attempt, channel, error)
            return None

    async def _deliver_in_background(self, channel: str, request: dict[str, Any], receivers: int) -> None:
        """Without answers: publish again while fewer listeners than expected received it (bounded)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._options.delivery_timeout
        delay = _FIRST_REPUBLISH_DELAY
        attempt = 0
        expected = await self._roster.expected(channel)
        while receivers < len(expected) and loop.time() + delay < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_REPUBLISH_DELAY)
            attempt += 1
            expected = await self._roster.expected(channel)
            reached = await self._republish(channel, request, attempt)
            if reached is not None:  # 0 is a count too; None: not sent, keep the last count
                receivers = reached
        if receivers < len(expected):
            _LOGGER.warning(
                "Broadcast on %r reached %d of the %d processes expected", channel, receivers, len(expected)
            )

    async def publish(
        self,
        name: str,
        params: Mapping[str, Any],
        expect_answers: bool,
        timeout: float,  # noqa: ASYNC109
    ) -> list[RawAnswer | MissingAnswer | None] | None:
        """``Backend.publish``: send ``params`` to the handlers of channel ``name`` (see the module)."""
        channel = self._prefix + name
        request_id = uuid.uuid4().hex
        request = {
            "id": request_id,
            "ts": time.time(),
            "params": params,
            "reply": self.answer_channel if expect_answers else None,
        }
        if not expect_answers:
            receivers = await self._transport.publish(channel, self._frame(channel, request, 0))
            self._tasks.spawn(self._deliver_in_background(channel, request, receivers))
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if not self._transport.connected:
            # Right after a Redis restart the listener needs a moment to subscribe again to the answer channel.
            bound = min(timeout, self._options.bound)
            if not await self._transport.wait_connected(bound):
                raise BroadcastUnavailableError(
                    f"broadcast on {name!r} not sent: the listener is not connected to {self._transport.where} "
                    f"(waited {bound:.1f}s)"
                )
        collector = _Collector()
        self._pending[request_id] = collector
        presence = asyncio.ensure_future(self._roster.expected(channel))  # concurrently with the publish
        try:
            try:
                collector.receivers = await self._transport.publish(channel, self._frame(channel, request, 0))
            except BaseException:
                presence.cancel()
                raise
            collector.expected = await presence
            await self._collect(collector, channel, request, deadline)
        finally:
            self._pending.pop(request_id, None)
        return self._result(collector, name, timeout)

    async def _collect(self, collector: _Collector, channel: str, request: dict[str, Any], deadline: float) -> None:
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
                    expected, receivers = await asyncio.wait_for(
                        asyncio.gather(self._roster.expected(channel), self._republish(channel, request, attempt)),
                        deadline - loop.time(),
                    )
                except TimeoutError:
                    return
                collector.expected = expected
                if receivers is not None:
                    collector.receivers = receivers
                delay = min(delay * 2, _MAX_REPUBLISH_DELAY)
                next_attempt = loop.time() + delay

    @staticmethod
    def _result(collector: _Collector, name: str, timeout: float) -> list[RawAnswer | MissingAnswer | None]:
        answers: list[RawAnswer | MissingAnswer | None] = list(collector.answers.values())
        missing = collector.missing_expected()
        message = f"no answer within {timeout:.1f}s"
        answers.extend(MissingAnswer(message=message, hostname=peer.hostname, pid=peer.pid) for peer in missing)
        unknown = max(0, collector.receivers - len(collector.answers) - len(missing))
        answers.extend([None] * unknown)
        if missing or unknown:
            _LOGGER.warning(
                "Broadcast on %r: %d answers within %.1fs, %d expected processes and %d other receivers missing",
                name,
                len(collector.answers),
                timeout,
                len(missing),
                unknown,
            )
        return answers
