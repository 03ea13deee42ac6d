"""Serve an ASGI app with uvicorn in a background thread on a free 127.0.0.1 port, for real HTTP requests."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any, Literal

import uvicorn

from tests.servers import free_port

_START_TIMEOUT = 15.0
_STOP_TIMEOUT = 10.0


@contextlib.contextmanager
def serve(app: Any, lifespan: Literal["on", "off", "auto"] = "on", **options: Any) -> Iterator[str]:
    """Run ``app`` until the block ends; yield its base URL ``http://127.0.0.1:<port>``.

    uvicorn's own proxy-headers handling is off so that our ForwardedHeadersMiddleware is the only thing that
    reads X-Forwarded-*: with it on, uvicorn would replace the client address first and our middleware would
    then see an untrusted peer.
    """
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        lifespan=lifespan,
        proxy_headers=False,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
        **options,
    )
    server = uvicorn.Server(config)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            server.run()
        except BaseException as error:  # reported to the test below
            errors.append(error)

    thread = threading.Thread(target=run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + _START_TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(_STOP_TIMEOUT)
            raise RuntimeError(f"uvicorn did not start on port {port} (lifespan failed?): {errors!r}")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(_STOP_TIMEOUT)
        if thread.is_alive():
            server.force_exit = True
            thread.join(_STOP_TIMEOUT)
    if errors:
        raise RuntimeError(f"uvicorn on port {port} failed") from errors[0]
