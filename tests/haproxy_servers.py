"""Debian's HAProxy in round-robin in front of several service instances on 127.0.0.1, logging every request.

HAProxy checks each instance with ``GET <check>`` (``inter 500ms fall 1 rise 2``), keeps its connections to them
alive, and has no retries and no redispatch: those would hide refused connections. Its log (RFC 5424,
microsecond timestamps, on its stdout) says when it took a server out and put it back, and which server
answered each request. ``frontend`` and ``backend`` add configuration lines (headers, routing rules).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from tests.conftest import missing
from tests.lifecycle_servers import READINESS
from tests.servers import find_binary, free_port, stop_process, wait_port

_EVENT = re.compile(r"^<\d+>1 (\S+) \S+ haproxy \d+ - - (.*)$")
_REQUEST = re.compile(r"^req (\d+)\.(\d+) (\d+) (\d+) (\S+) (-?\d+)$")


class HAProxy:
    """Debian's haproxy in front of the instances of ``ports`` (server name -> port), logging to its stdout."""

    def __init__(
        self,
        folder: Path,
        ports: dict[str, int],
        *,
        check: str = READINESS,
        frontend: Sequence[str] = (),
        backend: Sequence[str] = (),
    ) -> None:
        binary = find_binary("haproxy", "/usr/sbin")
        if binary is None:
            missing("haproxy")
        assert binary is not None
        self.port = free_port()
        self.folder = folder
        self.log = folder / "haproxy.log"
        servers = "\n".join(f"    server {name} 127.0.0.1:{port} check" for name, port in ports.items())
        frontend_lines = "".join(f"    {line}\n" for line in frontend)
        backend_lines = "".join(f"    {line}\n" for line in backend)
        (folder / "haproxy.cfg").write_text(
            f"""
global
    maxconn 2000
    log stdout format rfc5424 local0 info

defaults
    mode http
    log global
    log-format "req %Ts.%ms %Th %Ti %s %ST"
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout check 3s          # a busy CI machine answers the check within that
    retries 0                 # no retry and no redispatch: they would hide refused connections
    no option redispatch
    http-reuse safe           # connections to the instances are kept alive and reused

frontend public
    bind 127.0.0.1:{self.port}
{frontend_lines}    default_backend service

backend service
    balance roundrobin
    option httpchk GET {check}
    http-check expect status 200
    option log-health-checks
    default-server inter 500ms fall 1 rise 2
{backend_lines}{servers}
""",
            encoding="utf-8",
        )
        with self.log.open("wb") as log:
            self.process: subprocess.Popen[bytes] | None = subprocess.Popen(  # noqa: S603
                [binary, "-db", "-f", str(folder / "haproxy.cfg")], stdout=log, stderr=subprocess.STDOUT
            )
        wait_port(self.port, timeout=30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def events(self) -> list[tuple[float, str]]:
        """Server state changes and check results: (wall time, message)."""
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            match = _EVENT.match(line)
            if match and not match.group(2).startswith("req "):
                found.append((datetime.fromisoformat(match.group(1)).timestamp(), match.group(2)))
        return found

    def requests(self) -> list[tuple[float, str, int]]:
        """Every request: (reception time, server, status)."""
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            match = _EVENT.match(line)
            request = _REQUEST.match(match.group(2)) if match else None
            if request:
                seconds, millis, handshake, idle, server, status = request.groups()
                # %Ts is when the stream began (for a keep-alive request: when the previous one ended); the
                # request itself came after the handshake and the idle time.
                received = int(seconds) + (int(millis) + int(handshake) + int(idle)) / 1000
                found.append((received, server, int(status)))
        return found

    def close(self) -> None:
        stop_process(self.process)
        self.process = None
