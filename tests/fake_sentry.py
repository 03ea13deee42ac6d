"""A small fake Sentry ingest server on 127.0.0.1, speaking Sentry's envelope protocol.

It accepts ``POST /api/<project>/envelope/`` (gzip, deflate or brotli encoded, as sentry-sdk sends it) and keeps
the ``event`` items of the envelopes in ``events``.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parent.parent


def run_script(script: str, env: dict[str, str], path: Sequence[Path] = ()) -> subprocess.CompletedProcess[str]:
    """``script`` in a new interpreter (sentry-sdk's client is process-wide), with ``env`` as the only Sentry and
    ``C2C__`` variables, and the folders of ``path`` first on its import path."""
    base = {key: value for key, value in os.environ.items() if not key.startswith("C2C__") and key != "SENTRY_DSN"}
    if path:
        base["PYTHONPATH"] = os.pathsep.join([*map(str, path), str(ROOT)])
    return subprocess.run(
        [sys.executable, "-c", script], env={**base, **env}, cwd=ROOT, capture_output=True, text=True,
        timeout=60, check=False,
    )


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        encoding = self.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        elif encoding == "br":
            import brotli  # type: ignore[import-not-found]

            body = brotli.decompress(body)
        lines = body.split(b"\n")
        # An envelope: a header line, then (item header, item payload) pairs.
        for index in range(1, len(lines) - 1, 2):
            item_header = json.loads(lines[index])
            if item_header.get("type") == "event":
                with self.server.lock:
                    self.server.events.append(json.loads(lines[index + 1]))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    events: list[dict[str, Any]]
    lock: threading.Lock


class FakeSentry:
    """The server, started by ``start()`` and stopped by ``close()``; ``dsn(project)`` points sentry-sdk at it."""

    def __init__(self) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.events = []
        self._server.lock = threading.Lock()
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def dsn(self, project: int = 42) -> str:
        return f"http://publickey@127.0.0.1:{self.port}/{project}"

    @property
    def events(self) -> list[dict[str, Any]]:
        with self._server.lock:
            return list(self._server.events)

    def wait_events(self, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        """The events once ``count`` have arrived (sentry-sdk sends from a thread of its own)."""
        deadline = time.monotonic() + timeout
        while len(self.events) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.events

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
