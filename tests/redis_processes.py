"""Real redis-server / redis-sentinel processes with their own arguments: an ACL user, TLS with a CA made by
``openssl``, a Sentinel with ``requirepass``; and an address that never completes a TCP handshake.

Every process is started on a free 127.0.0.1 port and stopped by its pid.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import missing
from tests.servers import find_binary, free_port, stop_process, wait_port

# A password with every character that must be percent-encoded in a URL.
ACL_USER = "app"
ACL_PASSWORD = "Pa#ss/w0rd?x@y:z%1"


def redis_binary() -> str:
    binary = find_binary("redis-server")
    if binary is None:
        missing("redis-server")
    assert binary is not None
    return binary


def openssl_binary() -> str:
    binary = find_binary("openssl")
    if binary is None:
        missing("openssl")
    assert binary is not None
    return binary


class RedisProcess:
    """``redis-server`` (or ``redis-server conf --sentinel``) with the given arguments; stopped by pid."""

    def __init__(self, args: list[str], port: int, tls: bool = False) -> None:
        self.args = args
        self.port = port
        self.tls = tls
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(self.port)
        except TimeoutError:
            self.stop()
            raise

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None


def server_args(directory: str, port: int, *extra: str) -> list[str]:
    """Arguments of a throw-away redis-server on 127.0.0.1 (no persistence)."""
    return [
        redis_binary(),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--dir", directory,
        "--protected-mode", "no",
        *extra,
    ]  # fmt: skip


def acl_args() -> list[str]:
    """An ACL user with a password full of URL-special characters; the default user disabled."""
    return ["--user", ACL_USER, "on", f">{ACL_PASSWORD}", "~*", "&*", "+@all", "--user", "default", "off"]


def acl_redis(name: str) -> Iterator[RedisProcess]:
    """A redis-server with the ACL user of :func:`acl_args` (default user off): the body of a fixture."""
    directory = TemporaryDirectory(f"c2c-redis-{name}-")
    port = free_port()
    server = RedisProcess(server_args(directory.path, port, *acl_args()), port)
    server.start()
    yield server
    server.stop()
    directory.close()


def tls_acl_redis(name: str, tls: TlsFiles) -> Iterator[RedisProcess]:
    """A redis-server on TLS only (no plain port) with the ACL user of :func:`acl_args`: the body of a fixture."""
    directory = TemporaryDirectory(f"c2c-redis-{name}-")
    port = free_port()
    server = RedisProcess(server_args(directory.path, 0, *tls.server_args(port), *acl_args()), port, tls=True)
    server.start()
    yield server
    server.stop()
    directory.close()


class TlsFiles:
    """A self-signed CA and a server certificate for 127.0.0.1, made with ``openssl``."""

    def __init__(self, directory: Path) -> None:
        openssl = openssl_binary()
        self.directory = directory
        self.ca = directory / "ca.crt"
        self.ca_key = directory / "ca.key"
        self.cert = directory / "server.crt"
        self.key = directory / "server.key"
        request = directory / "server.csr"
        extensions = directory / "server.ext"
        # The extensions Python 3.13's strict verification requires (VERIFY_X509_STRICT).
        extensions.write_text(
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
            "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
            encoding="utf-8",
        )

        def run(*args: str) -> None:
            subprocess.run([openssl, *args], check=True, capture_output=True, timeout=60)

        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=c2c-test-ca",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout", str(self.ca_key), "-out", str(self.ca))  # fmt: skip
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", str(self.key), "-out", str(request))  # fmt: skip
        run("x509", "-req", "-in", str(request), "-CA", str(self.ca), "-CAkey", str(self.ca_key),
            "-CAcreateserial", "-days", "2", "-extfile", str(extensions), "-out", str(self.cert))  # fmt: skip

    def server_args(self, tls_port: int) -> list[str]:
        """redis-server arguments: TLS only on ``tls_port`` (no plain port), clients not asked for a certificate."""
        return [
            "--tls-port", str(tls_port),
            "--tls-cert-file", str(self.cert),
            "--tls-key-file", str(self.key),
            "--tls-ca-cert-file", str(self.ca),
            "--tls-auth-clients", "no",
        ]  # fmt: skip


class TemporaryDirectory:
    def __init__(self, prefix: str) -> None:
        self.path = tempfile.mkdtemp(prefix=prefix)

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


class Unreachable:
    """A 127.0.0.1 address whose TCP handshake never completes, like a host that drops packets.

    A listening socket with a backlog of 0, filled by one connection and never accepted: the kernel drops
    every further SYN, so a client's connect waits for its own connect timeout.
    """

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = int(self.sock.getsockname()[1])
        self.fillers: list[socket.socket] = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.settimeout(0.2)
            try:
                filler.connect(("127.0.0.1", self.port))
            except OSError:
                filler.close()
                return  # the queue is full: the address is now unreachable
            self.fillers.append(filler)
        raise RuntimeError("could not fill the accept queue of the unreachable listener")

    def close(self) -> None:
        for filler in self.fillers:
            with contextlib.suppress(OSError):
                filler.close()
        with contextlib.suppress(OSError):
            self.sock.close()


__all__ = [
    "ACL_PASSWORD",
    "ACL_USER",
    "RedisProcess",
    "TemporaryDirectory",
    "TlsFiles",
    "Unreachable",
    "acl_args",
    "free_port",
    "server_args",
]
