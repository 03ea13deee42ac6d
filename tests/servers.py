"""Real servers for the tests: redis-server and PostgreSQL on free 127.0.0.1 ports, a black hole, a cutting proxy.

Each server is started by a fixture and stopped at the end. Under CI=true a missing server binary fails
the run (see conftest.missing), so a machine without the services never passes silently.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import selectors
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def wait_port_closed(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                pass
        except OSError:
            return
        time.sleep(0.05)
    raise TimeoutError(f"127.0.0.1:{port} still open after {timeout}s")


def stop_process(process: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, grace: float = 10.0) -> None:
    """Stop a server the tests started: ``sig`` (SIGTERM), then SIGKILL after ``grace`` seconds."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(sig)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def wait_for(what: str, condition: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll ``condition`` until it returns a truthy value (or fail after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = condition()
        except (httpx.HTTPError, OSError) as error:
            last = error
        else:
            if last:
                return last
        time.sleep(0.3)
    pytest.fail(f"{what}: not reached within {timeout} s (last: {last!r})")


def uvicorn_workers(parent: int) -> list[int]:
    """The uvicorn workers of the supervisor ``parent`` (its multiprocessing helper child is left out)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(b")", 1)[-1].split()
        if int(fields[1]) == parent and fields[0] != b"Z" and b"spawn_main" in cmdline:
            pids.append(int(entry))
    return sorted(pids)


def find_binary(name: str, *extra_dirs: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in extra_dirs:
        candidate = Path(directory) / name
        if candidate.exists():
            return str(candidate)
    return None


class RedisServer:
    """A real redis-server on a free port; can be stopped and started again on the same port."""

    def __init__(self, port: int | None = None, password: str | None = None) -> None:
        self.binary = find_binary("redis-server")
        if self.binary is None:
            raise FileNotFoundError("redis-server")
        self.port = port or free_port()
        self.password = password
        self.process: subprocess.Popen[bytes] | None = None
        self.directory = tempfile.mkdtemp(prefix="c2c-redis-")

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            str(self.binary),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", self.directory,
            "--protected-mode", "no",
        ]
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None
            wait_port_closed(self.port)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


class PostgresServer:
    """A real PostgreSQL cluster made with initdb in a temporary directory, on a free port."""

    def __init__(self) -> None:
        bindir_candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
        extra = [str(path) for path in bindir_candidates]
        self.initdb = find_binary("initdb", *extra)
        self.pg_ctl = find_binary("pg_ctl", *extra)
        if self.initdb is None or self.pg_ctl is None:
            raise FileNotFoundError("initdb/pg_ctl (PostgreSQL server)")
        self.port = free_port()
        self.directory = tempfile.mkdtemp(prefix="c2c-pg-")
        self.data = os.path.join(self.directory, "data")
        self.user = "c2c"
        self.password = "c2c-test-password"
        self.database = "c2c"
        # PostgreSQL refuses to run as root: run it as the 'postgres' system user when we are root.
        self.run_as: str | None = None
        if os.geteuid() == 0:
            self.run_as = "postgres"
            entry = pwd.getpwnam("postgres")
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)

    def _command(self, args: list[str]) -> list[str]:
        if self.run_as:
            return ["runuser", "-u", self.run_as, "--", *args]
        return args

    def start(self) -> None:
        pwfile = os.path.join(self.directory, "pw")
        with open(pwfile, "w", encoding="utf-8") as file:
            file.write(self.password)
        if self.run_as:
            entry = pwd.getpwnam(self.run_as)
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        subprocess.run(
            self._command([
                str(self.initdb), "-D", self.data, "-U", self.user, "--pwfile", pwfile,
                "--auth", "scram-sha-256", "-E", "UTF8", "--no-sync",
            ]),
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            self._command([
                str(self.pg_ctl), "-D", self.data, "-o", options, "-l",
                os.path.join(self.directory, "log"), "-w", "-t", "60", "start",
            ]),
            check=True, stdout=subprocess.DEVNULL,
        )
        wait_port(self.port)
        self.psql(f"CREATE DATABASE {self.database}", database="postgres")

    def psql(self, sql: str, database: str | None = None) -> str:
        psql = find_binary("psql") or "psql"
        result = subprocess.run(
            [psql, "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", database or self.database,
             "-v", "ON_ERROR_STOP=1", "-At", "-c", sql],
            check=True, capture_output=True, text=True, env={**os.environ, "PGPASSWORD": self.password},
        )
        return result.stdout

    def url(self, driver: str = "postgresql+asyncpg", database: str | None = None) -> str:
        return f"{driver}://{self.user}:{self.password}@127.0.0.1:{self.port}/{database or self.database}"

    def stop(self) -> None:
        subprocess.run(
            self._command([str(self.pg_ctl), "-D", self.data, "-m", "fast", "-w", "stop"]),
            check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        shutil.rmtree(self.directory, ignore_errors=True)


class _Listener:
    """A TCP listener on a free 127.0.0.1 port; a thread hands each connection it accepts to ``_accepted``.

    Subclasses set their own attributes before calling ``__init__``, which starts the thread.
    """

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = int(self.sock.getsockname()[1])
        self._closed = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._closed:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self._accepted(connection)

    def _accepted(self, connection: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self.sock.close()


class BlackHole(_Listener):
    """A TCP listener on 127.0.0.1 that accepts connections and never answers.

    ``accepted`` holds the connections it accepted; ``held`` the seconds each stayed open until its client closed
    it (how long the client waited: its timeout), in the order they were closed.
    """

    def __init__(self) -> None:
        self.accepted: list[socket.socket] = []
        self.held: list[float] = []
        super().__init__()

    def _accepted(self, connection: socket.socket) -> None:
        self.accepted.append(connection)  # kept open, never answered
        threading.Thread(target=self._watch, args=(connection, time.monotonic()), daemon=True).start()

    def _watch(self, connection: socket.socket, since: float) -> None:
        with contextlib.suppress(OSError):
            while connection.recv(65536):  # read and dropped
                pass
        if not self._closed:
            self.held.append(time.monotonic() - since)

    def close(self) -> None:
        super().close()
        for connection in self.accepted:
            with contextlib.suppress(OSError):
                connection.close()


class CuttingProxy(_Listener):
    """A TCP proxy on 127.0.0.1 in front of a real server, for the faults a real server does not make on demand.

    Each connection is forwarded both ways until its client sends ``marker`` (e.g. a Redis key): then the proxy
    closes that connection at once (a dropped connection), or with ``hold=True`` stops forwarding and never
    answers (a server that hangs) until the client closes it. ``connections`` counts the connections accepted,
    ``marked`` the times the marker was sent, ``held`` the seconds each held connection stayed open after the
    marker (how long the client waited: its timeout).
    """

    def __init__(self, upstream_port: int, marker: bytes, hold: bool = False) -> None:
        self.upstream_port = upstream_port
        self.marker = marker
        self.hold = hold
        self.connections = 0
        self.marked = 0
        self.held: list[float] = []
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        super().__init__()

    def __enter__(self) -> CuttingProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _accepted(self, connection: socket.socket) -> None:
        with self._lock:
            self.connections += 1
        threading.Thread(target=self._forward, args=(connection,), daemon=True).start()

    def _forward(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
        upstream.settimeout(None)
        with self._lock:
            self._sockets += [client, upstream]
        peer = {client: upstream, upstream: client}
        held_since: float | None = None
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(client, selectors.EVENT_READ)
                selector.register(upstream, selectors.EVENT_READ)
                while not self._closed:
                    for key, _ in selector.select(timeout=0.1):
                        source: socket.socket = key.fileobj  # type: ignore[assignment]
                        data = source.recv(65536)
                        if not data:
                            if held_since is not None:
                                self.held.append(time.monotonic() - held_since)
                            return
                        if source is client and held_since is None and self.marker in data:
                            with self._lock:
                                self.marked += 1
                            if not self.hold:
                                return
                            held_since = time.monotonic()
                        if held_since is None:
                            peer[source].sendall(data)
        except OSError:
            pass
        finally:
            client.close()
            upstream.close()

    def close(self) -> None:
        super().close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()
