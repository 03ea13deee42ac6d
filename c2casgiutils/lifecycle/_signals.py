"""Drain on SIGTERM: hold uvicorn's own SIGTERM handling back for the drain delay, let SIGINT through at once.

uvicorn (0.30 and later, one process or each worker of ``--workers N``) installs its handler of SIGTERM and
SIGINT with ``signal.signal`` before the lifespan starts; the handler only sets ``should_exit``, and uvicorn's
main loop then closes the listening sockets, waits for the open connections within
``--timeout-graceful-shutdown``, and runs the lifespan shutdown last. With ``--workers N`` the supervisor
forwards SIGTERM to every worker and keeps its own copy of the listening socket until the last worker ended.

:class:`SignalDrain` replaces that handler from inside the lifespan start-up (the main thread) with one that
marks the process ``draining`` at once and calls uvicorn's handler only when the delay is over: meanwhile
the sockets stay open, new requests are served (with ``Connection: close``, see ``_middleware``) and the
readiness check fails, so that load balancers and Kubernetes endpoints stop sending. A second SIGTERM or any
SIGINT (Ctrl+C in a terminal reaches every process of the group) goes to uvicorn at once.

A server that does not handle these signals with a Python handler of its own (none, or asyncio's
``add_signal_handler``) is left alone: there is nothing to delay.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

_LOGGER = logging.getLogger(__name__)

Handler = Callable[[int, FrameType | None], Any]


def _delayable(handler: Any) -> bool:
    """Whether ``handler`` is a server's Python handler that can be called later (not a default or asyncio's)."""
    if not callable(handler) or handler in (signal.default_int_handler, signal.SIG_DFL, signal.SIG_IGN):
        return False
    # asyncio's loop.add_signal_handler() installs a no-op and dispatches through its wake-up fd.
    return getattr(handler, "__name__", "") != "_sighandler_noop"


class SignalDrain:
    """The SIGTERM/SIGINT handlers of this process while it serves.

    ``on_drain`` runs in the event loop as soon as the process must drain (SIGTERM or SIGINT); uvicorn's
    handler runs ``delay`` seconds after the first SIGTERM, at once for a second SIGTERM or a SIGINT.
    """

    def __init__(self, delay: float, on_drain: Callable[[], None]) -> None:
        self.delay = delay
        self.on_drain = on_drain
        self.signals: list[int] = []  # received, in order
        self._previous: dict[int, Handler] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._forwarded = False

    @property
    def installed(self) -> bool:
        return bool(self._previous)

    @property
    def terminating(self) -> bool:
        """Whether a stop signal reached this process."""
        return bool(self.signals)

    def install(self) -> bool:
        """Wrap the server's handlers; False (and nothing changed) outside the main thread or without them."""
        if self.installed:
            return True
        if threading.current_thread() is not threading.main_thread():
            return False
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
        if not all(_delayable(handler) for handler in previous.values()):
            return False
        self._loop = asyncio.get_running_loop()
        self._previous = {sig: handler for sig, handler in previous.items() if callable(handler)}
        for sig in self._previous:
            signal.signal(sig, self._handle)
        return True

    def uninstall(self) -> None:
        """Give the server its handlers back (when they are still ours)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, handler in self._previous.items():
            if signal.getsignal(sig) == self._handle:
                signal.signal(sig, handler)
        self._previous = {}

    def _handle(self, sig: int, frame: FrameType | None) -> None:
        """The signal handler: runs in the main thread between two bytecodes, so it only schedules."""
        first = not self.signals
        self.signals.append(sig)
        if first:
            self._call_in_loop(self.on_drain)
        if sig == signal.SIGTERM and first and self.delay > 0:
            self._call_in_loop(self._start_timer)
        else:
            self._forward(sig, frame)

    def _call_in_loop(self, callback: Callable[[], None]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            contextvars.Context().run(callback)
            return
        # In a context of its own: the signal interrupted whatever ran, often a request, whose ids (request id,
        # trace context) the drain's log lines must not carry.
        loop.call_soon_threadsafe(callback, context=contextvars.Context())

    def _start_timer(self) -> None:
        if self._forwarded:
            return
        assert self._loop is not None
        _LOGGER.info("SIGTERM: draining for %g s before the server shuts down", self.delay)
        self._timer = self._loop.call_later(self.delay, self._drain_over)

    def _drain_over(self) -> None:
        self._timer = None
        _LOGGER.info("Drain over: the server stops accepting and finishes the requests in flight")
        self._forward(signal.SIGTERM, None)

    def _forward(self, sig: int, frame: FrameType | None) -> None:
        """Hand the signal to the server's own handler (once the drain is over, or at once)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._forwarded = True
        handler = self._previous.get(sig)
        if handler is not None:
            handler(sig, frame)
