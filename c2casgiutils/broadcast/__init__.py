"""Broadcast a call to every process of the service (every worker of every container), optionally with answers.

Without Redis the broadcast stays in this process (local backend); with ``C2C__REDIS__URL`` (or Sentinel)
:func:`startup` switches to Redis pub/sub, keeping the subscriptions made before.

    echo = await broadcast.decorate(_echo, expect_answers=True)
    answers = await echo(message="hi")  # one BroadcastResponse (or MissingAnswer) per process

See ``docs/broadcast.md`` for the message format, the answer counting and the failure behaviour.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar, overload

from pydantic_core import to_jsonable_python

from c2casgiutils import config, redis_utils
from c2casgiutils.broadcast import types
from c2casgiutils.broadcast._typed import TypedFunction, default_channel, load_answer, response_model_for
from c2casgiutils.broadcast.interface import (
    Backend,
    BackendFactory,
    Callback,
    Confirmation,
    ConnectedHook,
    Registry,
)
from c2casgiutils.broadcast.local import LocalBackend
from c2casgiutils.broadcast.redis import RedisBackend
from c2casgiutils.broadcast.types import (
    BroadcastError,
    BroadcastResponse,
    BroadcastUnavailableError,
    ErrorAnswer,
    MissingAnswer,
)

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = [
    "BroadcastError",
    "BroadcastResponse",
    "BroadcastUnavailableError",
    "ErrorAnswer",
    "MissingAnswer",
    "backend_name",
    "broadcast",
    "decorate",
    "is_connected",
    "on_connected",
    "shutdown",
    "startup",
    "subscribe",
    "types",
    "unsubscribe",
]

_LOGGER = logging.getLogger(__name__)

_P = ParamSpec("_P")
_R = TypeVar("_R")

_BACKENDS: dict[str, BackendFactory] = {LocalBackend.name: LocalBackend, RedisBackend.name: RedisBackend.from_settings}
"""The backends by name; :func:`startup` builds the one the settings choose through the Backend interface."""


class _State:
    """Process-wide state: the registry outlives backends, so switching backend keeps subscriptions."""

    def __init__(self) -> None:
        self.registry = Registry()
        self.backend: Backend = LocalBackend(self.registry)
        self.hooks: list[ConnectedHook] = []


_STATE = _State()


# ---------------------------------------------------------------------------------------------- lifecycle


def _configured_backend() -> str:
    """The name of the backend the settings ask for: Redis pub/sub when Redis is configured."""
    return RedisBackend.name if redis_utils.is_configured() else LocalBackend.name


async def startup(app: FastAPI | None = None) -> None:
    """Use Redis when configured (switching from the local backend keeps the subscriptions).

    Returns within the Redis connect and socket timeouts even when Redis is unreachable: the listener then
    keeps retrying in the background.
    """
    del app  # accepted for the documented signature; nothing is attached to the application
    name = _configured_backend()
    current = _STATE.backend
    if current.name != name or not current.is_usable():
        backend = _BACKENDS[name](_STATE.registry, _run_hooks)
        backend.take_over(current)
        await _replace_backend(backend)
    await _STATE.backend.start()


async def shutdown(app: FastAPI | None = None) -> None:
    """Stop the Redis listener (bounded); the subscriptions are kept for a later :func:`startup`."""
    del app
    if _STATE.backend.name != LocalBackend.name:
        await _replace_backend(LocalBackend(_STATE.registry))


async def _replace_backend(backend: Backend) -> None:
    previous, _STATE.backend = _STATE.backend, backend
    try:
        await previous.stop()
    except Exception:  # cleanup only: never let a broken old backend block the new one
        _LOGGER.warning("Broadcast: could not stop the previous backend cleanly", exc_info=True)


def backend_name() -> str:
    """``local`` or ``redis``."""
    return _STATE.backend.name


def is_connected() -> bool:
    """Whether broadcasts reach other processes now (Redis backend connected and subscribed)."""
    return _STATE.backend.connected


def on_connected(hook: ConnectedHook) -> None:
    """Run ``hook`` after each (re)connection of the listener to Redis, e.g. to resynchronise state."""
    if hook not in _STATE.hooks:
        _STATE.hooks.append(hook)


async def _run_hooks() -> None:
    for hook in list(_STATE.hooks):
        try:
            await hook()
        except Exception:
            _LOGGER.warning("Broadcast: a connection hook failed", exc_info=True)


# ---------------------------------------------------------------------------------------------- raw API


def _check_channel(channel: str) -> None:
    if not isinstance(channel, str) or not channel:
        raise ValueError(f"a broadcast channel is a non-empty string, got {channel!r}")


def _timeout(timeout: float | None) -> float:
    value = config.settings.broadcast.timeout.total_seconds() if timeout is None else float(timeout)
    if not value > 0:
        raise ValueError(f"the broadcast timeout must be a positive number of seconds, got {timeout!r}")
    return value


def subscribe(channel: str, callback: Callback) -> Confirmation:
    """Call ``callback(**params)`` (sync or async) in this process for every broadcast on ``channel``.

    One callback per channel: subscribing again replaces it. The result can be awaited to wait until Redis
    confirmed the subscription (bounded), or ignored.
    """
    _check_channel(channel)
    _STATE.registry.add(channel, callback)
    return _STATE.backend.subscribe(channel)


def unsubscribe(channel: str) -> Confirmation:
    """Stop handling ``channel`` in this process (awaitable, like :func:`subscribe`)."""
    _check_channel(channel)
    _STATE.registry.remove(channel)
    return _STATE.backend.unsubscribe(channel)


async def broadcast(
    channel: str,
    params: Mapping[str, Any] | None = None,
    expect_answers: bool = False,
    timeout: float | None = None,  # noqa: ASYNC109 - the documented API takes a timeout
) -> list[BroadcastResponse[Any] | MissingAnswer] | None:
    """Send ``params`` to the handler of ``channel`` in every process.

    With ``expect_answers`` the result has one element per process that received the message: a
    ``BroadcastResponse`` (payload, hostname, pid), an ``ErrorAnswer`` (the handler raised) or a
    ``MissingAnswer`` (no answer within ``timeout`` seconds, default ``settings.broadcast.timeout``).
    Raises ``BroadcastUnavailableError`` at once when Redis is configured but unreachable.
    """
    _check_channel(channel)
    if params is not None and not isinstance(params, Mapping):
        raise TypeError(f"broadcast params must be a mapping of names to values, got {type(params).__name__}")
    payload = to_jsonable_python(dict(params or {}))
    raw_answers = await _STATE.backend.publish(channel, payload, expect_answers, _timeout(timeout))
    if not expect_answers or raw_answers is None:
        return None
    response_model = response_model_for(Any)
    return [load_answer(raw, response_model) for raw in raw_answers]


# ---------------------------------------------------------------------------------------------- decorate


@overload
async def decorate(
    func: Callable[_P, Awaitable[_R]],
    channel: str | None = None,
    *,
    expect_answers: Literal[True],
    timeout: float | None = None,  # noqa: ASYNC109 - the documented API takes a timeout
) -> Callable[_P, Coroutine[Any, Any, list[BroadcastResponse[_R] | MissingAnswer]]]: ...


@overload
async def decorate(
    func: Callable[_P, _R],
    channel: str | None = None,
    *,
    expect_answers: Literal[True],
    timeout: float | None = None,  # noqa: ASYNC109 - the documented API takes a timeout
) -> Callable[_P, Coroutine[Any, Any, list[BroadcastResponse[_R] | MissingAnswer]]]: ...


@overload
async def decorate(
    func: Callable[_P, Any],
    channel: str | None = None,
    *,
    expect_answers: Literal[False] = False,
    timeout: float | None = None,  # noqa: ASYNC109 - the documented API takes a timeout
) -> Callable[_P, Coroutine[Any, Any, None]]: ...


@overload
async def decorate(
    func: Callable[_P, Any],
    channel: str | None = None,
    *,
    expect_answers: bool,
    timeout: float | None = None,  # noqa: ASYNC109 - the documented API takes a timeout
) -> Callable[_P, Coroutine[Any, Any, list[BroadcastResponse[Any] | MissingAnswer] | None]]: ...


async def decorate(
    func: Callable[..., Any],
    channel: str | None = None,
    expect_answers: bool = False,
    timeout: float | None = None,  # noqa: ASYNC109 - the documented API takes a timeout
) -> Callable[..., Coroutine[Any, Any, list[BroadcastResponse[Any] | MissingAnswer] | None]]:
    """Subscribe ``func`` and return a function that calls it in every process through the broadcast.

    The default channel is derived from the function's module and qualified name, so every process that
    decorates the same function listens to the same channel. Arguments are passed by name; pydantic models
    as parameters or return values are serialized and rebuilt from the function's type hints. With
    ``expect_answers`` the returned function gives the list of answers (see :func:`broadcast`).
    """
    typed = TypedFunction(func)
    name = default_channel(func) if channel is None else channel
    _check_channel(name)
    call_timeout = None if timeout is None else _timeout(timeout)
    await subscribe(name, typed.call)

    @functools.wraps(func)
    async def call_everywhere(*args: Any, **kwargs: Any) -> list[BroadcastResponse[Any] | MissingAnswer] | None:
        params = typed.dump_arguments(args, kwargs)
        raw_answers = await _STATE.backend.publish(name, params, expect_answers, _timeout(call_timeout))
        if not expect_answers or raw_answers is None:
            return None
        return [typed.load_answer(raw) for raw in raw_answers]

    return call_everywhere
