"""Run one check: bounded by its timeout, exceptions turned into results, cached and shared when asked."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
import weakref
from typing import Any

from pydantic_core import to_jsonable_python

from c2casgiutils._health import metrics
from c2casgiutils._health.check import Check
from c2casgiutils._health.masking import mask_payload, mask_text
from c2casgiutils._health.models import EntityResult, Result

_LOGGER = logging.getLogger(__name__)


def _consume(task: asyncio.Future[Any]) -> None:
    """Retrieve the outcome of an abandoned task so asyncio does not log it as never retrieved."""
    if not task.cancelled():
        task.exception()


async def _call(check: Check) -> Any:
    outcome = check.check()
    if inspect.isawaitable(outcome):
        return await outcome
    return outcome  # a subclass with a plain ``def check`` still works


def _exception_payload(error: BaseException) -> dict[str, Any]:
    message = str(error) or repr(error)
    kind = type(error)
    qualified = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    return {"error": mask_text(message), "exception": qualified}


async def execute(check: Check) -> EntityResult:
    """Run the check once; never raises (except when the caller is cancelled) and ends within the timeout.

    The check runs in its own task that is abandoned (cancelled, not awaited) at the timeout, so even a
    check that swallows the cancellation cannot hold the request.
    """
    timeout = check.timeout
    start = time.perf_counter()
    task = asyncio.ensure_future(_call(check))
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:
        task.cancel()
        task.add_done_callback(_consume)
        raise
    status_code: int
    payload: dict[str, Any]
    if not done:
        task.cancel()
        task.add_done_callback(_consume)
        status_code = 500
        payload = {"error": "timeout", "message": f"no answer within {timeout:g} s", "timeout": timeout}
        _LOGGER.warning("Health check %r timed out after %g s", check.name, timeout)
    elif task.cancelled():
        status_code, payload = 500, {"error": "the check was cancelled"}
    elif (error := task.exception()) is not None:
        status_code, payload = 500, _exception_payload(error)
        _LOGGER.warning("Health check %r raised %s", check.name, payload["exception"], exc_info=error)
    else:
        result = task.result()
        if isinstance(result, Result):
            status_code, payload = result.status_code, result.payload
        else:
            status_code = 500
            payload = {"error": f"the check returned {type(result).__name__}, expected health_checks.Result"}
        if status_code >= 400:
            _LOGGER.log(
                logging.WARNING if check.log_failures else logging.DEBUG,
                "Health check %r failed with status %s",
                check.name,
                status_code,
            )
    elapsed = time.perf_counter() - start
    safe_payload = mask_payload(to_jsonable_python(payload, fallback=str))
    metrics.record(check.name, status_code >= 400, elapsed)
    return EntityResult(
        name=check.name, tags=list(check.tags), status_code=status_code, payload=safe_payload, time_taken=elapsed
    )


class _SharedResult:
    """The cached result of one check and the run in progress (per event loop: a task belongs to one)."""

    def __init__(self) -> None:
        self.result: EntityResult | None = None
        self.expires = 0.0
        self.running: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[EntityResult]] = (
            weakref.WeakKeyDictionary()
        )

    async def get(self, check: Check, ttl: float) -> EntityResult:
        if self.result is not None and time.monotonic() < self.expires:
            return self.result
        loop = asyncio.get_running_loop()
        task = self.running.get(loop)
        if task is None:
            task = loop.create_task(self._refresh(check, ttl))
            self.running[loop] = task
            task.add_done_callback(self._forget(loop))
        # shield: a caller that goes away does not cancel the run the other callers wait for
        return await asyncio.shield(task)

    async def _refresh(self, check: Check, ttl: float) -> EntityResult:
        result = await execute(check)
        self.result = result
        self.expires = time.monotonic() + ttl
        return result

    def _forget(self, loop: asyncio.AbstractEventLoop) -> Any:
        def forget(task: asyncio.Task[EntityResult]) -> None:
            if self.running.get(loop) is task:
                del self.running[loop]
            with contextlib.suppress(asyncio.CancelledError):
                _consume(task)

        return forget


_SHARED: weakref.WeakKeyDictionary[Check, _SharedResult] = weakref.WeakKeyDictionary()


async def run(check: Check) -> EntityResult:
    """The result of the check: a fresh run, or with ``cache_ttl`` the cached or shared one."""
    ttl = check.cache_ttl
    if not ttl:
        return await execute(check)
    shared = _SHARED.get(check)
    if shared is None:
        shared = _SHARED[check] = _SharedResult()
    return await shared.get(check, ttl)
