"""Public types of the broadcast: the answers a caller gets back and the errors it may see."""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, Field

from c2casgiutils.redis_utils import RedisUnavailableError

PayloadT = TypeVar("PayloadT")


class BroadcastResponse(BaseModel, Generic[PayloadT]):
    """The answer of one process: what its handler returned, and which process it is."""

    hostname: str = Field(description="Host name of the answering process")
    pid: int = Field(description="Process id of the answering process")
    payload: PayloadT = Field(description="Value returned by the handler")


class MissingAnswer(BaseModel):
    """A process received the broadcast but gave no usable answer.

    ``status`` says why: ``timeout`` (no answer within the timeout: the process hangs, died after receiving the
    message, or is too slow) or ``error`` (see :class:`ErrorAnswer`).
    """

    status: Literal["timeout", "error"] = Field(default="timeout", description="Why the answer is missing")
    message: str = Field(default="no answer within the timeout", description="Human readable reason")
    hostname: str | None = Field(default=None, description="Host name of the process, when known")
    pid: int | None = Field(default=None, description="Process id of the process, when known")


class ErrorAnswer(MissingAnswer):
    """The handler of one process raised: the exception type and message, from that process."""

    status: Literal["timeout", "error"] = Field(default="error", description="Always 'error'")
    error_type: str = Field(default="Exception", description="Class name of the exception raised by the handler")


class BroadcastError(RuntimeError):
    """A broadcast could not be sent."""


class BroadcastUnavailableError(BroadcastError, RedisUnavailableError):
    """Redis is configured but unreachable: the broadcast was not sent (fail fast, nothing waits forever)."""
