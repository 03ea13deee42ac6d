"""A real Redis Sentinel set for the failover tests: 1 master, 1 replica, 3 redis-sentinel processes.

Everything listens on free 127.0.0.1 ports with its own configuration in a temporary directory, and is
stopped by pid. Helpers force a ``SENTINEL FAILOVER``, kill the master, and restart a killed server.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from tests.servers import find_binary, free_port, stop_process, wait_port, wait_port_closed

SERVICE = "c2cmaster"


class _Process:
    """One redis-server or redis-sentinel with its configuration file, started and stopped by pid."""

    def __init__(self, binary: str, directory: Path, name: str, port: int, config: str) -> None:
        self.binary = binary
        self.port = port
        self.directory = directory / name
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config = self.directory / f"{name}.conf"
        self.config.write_text(config, encoding="utf-8")
        self.log = self.directory / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([self.binary, str(self.config)], stdout=log, stderr=subprocess.STDOUT)
        wait_port(self.port)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None:
            return
        stop_process(self.process, sig)
        self.process = None
        wait_port_closed(self.port)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class SentinelSet:
    """``redis-server`` master + replica and three ``redis-sentinel`` watching them (quorum 2)."""

    def __init__(self, down_after_ms: int = 1000, failover_timeout_ms: int = 5000) -> None:
        server = find_binary("redis-server")
        sentinel = find_binary("redis-sentinel")
        if server is None:
            raise FileNotFoundError("redis-server")
        if sentinel is None:
            raise FileNotFoundError("redis-sentinel")
        self.directory = Path(tempfile.mkdtemp(prefix="c2c-sentinel-set-"))
        self.service = SERVICE
        master_port, replica_port = free_port(), free_port()
        self.servers = {
            port: _Process(server, self.directory, f"redis-{port}", port, self._server_config(port))
            for port in (master_port, replica_port)
        }
        self.initial_master = master_port
        self._replica_of = {replica_port: master_port}
        self.sentinels = [
            _Process(
                sentinel,
                self.directory,
                f"sentinel-{port}",
                port,
                self._sentinel_config(port, master_port, down_after_ms, failover_timeout_ms),
            )
            for port in (free_port(), free_port(), free_port())
        ]

    def _server_config(self, port: int) -> str:
        return "\n".join(
            [
                f"port {port}",
                "bind 127.0.0.1",
                "protected-mode no",
                'save ""',
                "appendonly no",
                f'dir "{self.directory / f"redis-{port}"}"',
                "repl-diskless-sync yes",
                "repl-diskless-sync-delay 0",
                "",
            ]
        )

    def _sentinel_config(self, port: int, master_port: int, down_after_ms: int, failover_timeout_ms: int) -> str:
        return "\n".join(
            [
                f"port {port}",
                "bind 127.0.0.1",
                "protected-mode no",
                f'dir "{self.directory / f"sentinel-{port}"}"',
                f"sentinel monitor {SERVICE} 127.0.0.1 {master_port} 2",
                f"sentinel down-after-milliseconds {SERVICE} {down_after_ms}",
                f"sentinel failover-timeout {SERVICE} {failover_timeout_ms}",
                f"sentinel parallel-syncs {SERVICE} 1",
                "",
            ]
        )

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 30.0) -> None:
        for port, process in self.servers.items():
            process.start()
            if port in self._replica_of:
                self._client(port).execute_command("REPLICAOF", "127.0.0.1", str(self._replica_of[port]))
        for sentinel in self.sentinels:
            sentinel.start()
        self.wait_healthy(timeout)

    def close(self) -> None:
        for process in [*self.sentinels, *self.servers.values()]:
            with contextlib.suppress(Exception):
                process.stop(signal.SIGKILL)
        shutil.rmtree(self.directory, ignore_errors=True)

    # ------------------------------------------------------------------ views

    @property
    def sentinel_addresses(self) -> str:
        """The value for ``C2C__REDIS__SENTINELS``."""
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    @staticmethod
    def _client(port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=2)

    def client(self, port: int) -> redis.Redis:
        """A plain synchronous client of one server (close it)."""
        return self._client(port)

    def master_port(self) -> int | None:
        """The master's port as the majority of the running sentinels reports it (None when unknown)."""
        votes: dict[int, int] = {}
        for sentinel in self.sentinels:
            if not sentinel.running:
                continue
            client = self._client(sentinel.port)
            try:
                address = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
            except redis.RedisError:
                continue
            finally:
                client.close()
            if address:
                port = int(address[1])
                votes[port] = votes.get(port, 0) + 1
        if not votes:
            return None
        port, count = max(votes.items(), key=lambda item: item[1])
        return port if count >= 2 else None

    def role(self, port: int) -> str | None:
        client = self._client(port)
        try:
            role = client.execute_command("ROLE")[0]
        except redis.RedisError:
            return None
        finally:
            client.close()
        return role.decode() if isinstance(role, bytes) else str(role)

    def replica_ports(self) -> list[int]:
        master = self.master_port()
        return [port for port in self.servers if port != master]

    def wait_healthy(self, timeout: float = 30.0) -> int:
        """Wait until every sentinel agrees on a master that says it is one, with every running server synced."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            master = self.master_port()
            if master is not None and self.role(master) == "master":
                running = [port for port, process in self.servers.items() if process.running and port != master]
                if all(self._replica_synced(port, master) for port in running) and self._sentinels_agree(master):
                    return master
            time.sleep(0.1)
        raise TimeoutError(f"the sentinel set did not settle within {timeout}s")

    def _replica_synced(self, port: int, master: int) -> bool:
        client = self._client(port)
        try:
            info = client.info("replication")
        except redis.RedisError:
            return False
        finally:
            client.close()
        return (
            info.get("role") == "slave"
            and int(info.get("master_port", 0)) == master
            and info.get("master_link_status") == "up"
        )

    def _sentinels_agree(self, master: int) -> bool:
        for sentinel in self.sentinels:
            if not sentinel.running:
                continue
            client = self._client(sentinel.port)
            try:
                address = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
            except redis.RedisError:
                return False
            finally:
                client.close()
            if not address or int(address[1]) != master:
                return False
        return True

    # ------------------------------------------------------------------ faults

    def failover(self) -> int:
        """``SENTINEL FAILOVER`` on the first sentinel; returns the old master's port (does not wait)."""
        old = self.master_port()
        assert old is not None, "no master to fail over from"
        client = self._client(self.sentinels[0].port)
        try:
            client.execute_command("SENTINEL", "FAILOVER", SERVICE)
        finally:
            client.close()
        return old

    def wait_master_change(self, old: int, timeout: float = 30.0) -> int:
        """Wait until the sentinels agree on a new master other than ``old``; returns its port."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            master = self.master_port()
            if master is not None and master != old and self.role(master) == "master":
                return master
            time.sleep(0.05)
        raise TimeoutError(f"no new master after {timeout}s")

    def kill_master(self) -> int:
        """SIGKILL the current master; returns its port."""
        master = self.master_port()
        assert master is not None, "no master to kill"
        self.servers[master].stop(signal.SIGKILL)
        return master

    def restart(self, port: int) -> None:
        """Start a stopped server again (Sentinel turns it into a replica of the current master)."""
        self.servers[port].start()

    def log_text(self) -> str:
        parts = []
        for process in [*self.servers.values(), *self.sentinels]:
            with contextlib.suppress(OSError):
                parts.append(f"--- {process.log.name}\n" + process.log.read_text(errors="replace")[-3000:])
        return "\n".join(parts)
