"""Ask every process of the service through broadcast, and fall back to this process alone before startup.

The admin tools (stacks, memory, versions) register a local collector with ``broadcast.decorate`` at
start-up; :class:`ProcessCollector` runs it everywhere and turns the answers into one entry per process.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, Field

from c2casgiutils import broadcast

_LOGGER = logging.getLogger(__name__)

LocalCollector = Callable[..., Awaitable[dict[str, Any]]]


class ProcessAnswer(BaseModel):
    """The answer of one process."""

    hostname: str
    pid: int
    payload: dict[str, Any]


class MissingProcess(BaseModel):
    """A process that received the request but gave no usable answer."""

    hostname: str | None = None
    pid: int | None = None
    status: str = Field(description="'timeout' or 'error'")
    message: str = ""


class Collected(BaseModel):
    """Answers of every process that replied in time."""

    answers: list[ProcessAnswer]
    missing: list[MissingProcess] = Field(description="Processes that did not answer in time or failed")
    broadcast: bool = Field(description="False when broadcast was not started: only this process answered")


def _payload(value: Any) -> dict[str, Any] | None:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return value
    return None


class ProcessCollector:
    """One collector, callable on every process once :meth:`start` has registered it with broadcast."""

    def __init__(self, local: LocalCollector, channel: str) -> None:
        self.local = local
        self.channel = channel
        self._broadcast: Callable[..., Awaitable[Any]] | None = None

    async def start(self) -> None:
        """Register the collector with broadcast; calling it again replaces the subscription (no duplicate)."""
        self._broadcast = await broadcast.decorate(self.local, channel=self.channel, expect_answers=True)

    def stop(self) -> None:
        """Forget the broadcast registration (tests restart the package between apps)."""
        self._broadcast = None

    async def collect(self, **kwargs: Any) -> Collected:
        """Run the collector on every process and gather the answers."""
        if self._broadcast is None:
            _LOGGER.debug("%s: broadcast not started, answering for this process only", self.channel)
            answer = ProcessAnswer(hostname=socket.gethostname(), pid=os.getpid(), payload=await self.local(**kwargs))
            return Collected(answers=[answer], missing=[], broadcast=False)
        results = await self._broadcast(**kwargs) or []
        answers: list[ProcessAnswer] = []
        missing: list[MissingProcess] = []
        for result in results:
            answered = _payload(getattr(result, "payload", None))
            hostname = getattr(result, "hostname", None)
            pid = getattr(result, "pid", None)
            if answered is None or hostname is None or pid is None:
                missing.append(
                    MissingProcess(
                        hostname=hostname,
                        pid=pid,
                        status=str(getattr(result, "status", "error")),
                        message=str(getattr(result, "message", "no usable answer")),
                    )
                )
                continue
            answers.append(ProcessAnswer(hostname=str(hostname), pid=int(pid), payload=answered))
        answers.sort(key=lambda answer: (answer.hostname, answer.pid))
        return Collected(answers=answers, missing=missing, broadcast=True)
