"""The Redis check through a real Redis Sentinel: master and replica are both pinged."""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from c2casgiutils import health_checks, redis_utils
from tests.servers import RedisServer, find_binary, free_port, wait_port

SERVICE = "health-master"
CLIENT_NAME = "c2c-health-test"


class _Process:
    """A redis-server process with its own arguments, stopped at the end."""

    def __init__(self, args: list[str], port: int) -> None:
        self.port = port
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(port)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def _wait(condition, what: str, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} after {timeout} s")


class SentinelSetup:
    def __init__(self, master: RedisServer) -> None:
        binary = find_binary("redis-server")
        assert binary is not None
        self.master = master
        self.directory = tempfile.mkdtemp(prefix="c2c-sentinel-")
        replica_port = free_port()
        self.replica = _Process(
            [
                binary,
                "--port",
                str(replica_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.directory,
                "--replicaof",
                "127.0.0.1",
                str(master.port),
            ],
            replica_port,
        )
        master_client = redis.Redis(host="127.0.0.1", port=master.port, socket_timeout=5)
        _wait(lambda: master_client.info("replication").get("connected_slaves") == 1, "the replica is not connected")
        master_client.close()
        sentinel_port = free_port()
        config = Path(self.directory) / "sentinel.conf"
        config.write_text(
            f"port {sentinel_port}\nbind 127.0.0.1\ndir {self.directory}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {master.port} 1\n"
            f"sentinel down-after-milliseconds {SERVICE} 60000\n",
            encoding="utf-8",
        )
        self.sentinel = _Process([binary, str(config), "--sentinel"], sentinel_port)
        sentinel_client = redis.Redis(host="127.0.0.1", port=sentinel_port, socket_timeout=5)
        _wait(lambda: len(sentinel_client.sentinel_slaves(SERVICE)) == 1, "the Sentinel does not see the replica")
        sentinel_client.close()

    def close(self) -> None:
        self.sentinel.stop()
        self.replica.stop()


def _service_clients(port: int) -> int:
    """Connections of the service to that server (named by the settings; the Sentinel's do not count)."""
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
    try:
        return sum(1 for entry in client.client_list() if entry.get("name") == CLIENT_NAME)
    finally:
        client.close()


@pytest.fixture
def sentinel_setup(own_redis_server: RedisServer) -> Iterator[SentinelSetup]:
    setup = SentinelSetup(own_redis_server)
    yield setup
    setup.close()


@pytest.fixture
async def sentinel_settings(settings, sentinel_setup: SentinelSetup) -> AsyncIterator[object]:  # type: ignore[no-untyped-def]
    settings.redis.url = None
    settings.redis.sentinels = f"127.0.0.1:{sentinel_setup.sentinel.port}"
    settings.redis.servicename = SERVICE
    settings.redis.options = {"client_name": CLIENT_NAME}
    yield settings
    await redis_utils.cleanup()


async def _run_one(check: health_checks.Check) -> health_checks.EntityResult:
    factory = health_checks.Factory()
    factory.add(check)
    (entity,) = (await factory.run()).entities
    return entity


async def test_sentinel_pings_master_and_replica(sentinel_settings, sentinel_setup: SentinelSetup) -> None:  # type: ignore[no-untyped-def]
    assert _service_clients(sentinel_setup.replica.port) == 0
    entity = await _run_one(health_checks.Redis())
    assert entity.status_code == 200
    assert entity.payload["master"] == "ok"
    assert entity.payload["replica"] == "ok"
    assert entity.payload["redis"] == f"sentinel 127.0.0.1:{sentinel_setup.sentinel.port} service {SERVICE}"
    assert _service_clients(sentinel_setup.replica.port) == 1  # the replica itself was reached
    assert _service_clients(sentinel_setup.master.port) == 1


async def test_sentinel_master_down(sentinel_settings, sentinel_setup: SentinelSetup) -> None:  # type: ignore[no-untyped-def]
    sentinel_setup.master.stop()
    entity = await _run_one(health_checks.Redis(timeout=10))
    assert entity.status_code == 500
    assert entity.payload["master"] != "ok"
    assert "master: " in entity.payload["error"]
