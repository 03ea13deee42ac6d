"""Redis through real Redis Sentinels: the check's payload (master address, replicas, no replica), a Sentinel
with ``requirepass`` and TLS (``C2C__REDIS__SENTINEL_OPTIONS``), and dead Sentinels first in the list.

The cost of a dead Sentinel is asserted as a number of connections (one per lookup, never retried on the same
Sentinel) and, for one that never answers, as the time its client waited, seen by that server; the time a lookup
takes is measured by ``bench/bench_sentinel.py``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis

from c2casgiutils import config, health_checks, redis_utils
from tests.redis_processes import RedisProcess, TemporaryDirectory, TlsFiles, Unreachable, redis_binary, server_args
from tests.servers import BlackHole, CuttingProxy, RedisServer, free_port

pytestmark = pytest.mark.timeout(120)

SERVICE = "health-master"
CLIENT_NAME = "c2c-health-test"
SENTINEL_PASSWORD = "Sentinel-Pass-2718"


def _wait(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} after {timeout} s")


class SentinelSetup:
    """A master (the given server), optionally a replica, and one Sentinel (optionally with password and TLS).

    The Sentinel monitors the master at ``monitored_port`` when given (a proxy in front of it), else at its port.
    """

    def __init__(
        self,
        master: RedisServer,
        replica: bool = True,
        password: str | None = None,
        tls: TlsFiles | None = None,
        monitored_port: int | None = None,
    ) -> None:
        binary = redis_binary()
        self.master = master
        self.directory = TemporaryDirectory("c2c-sentinel-")
        self.replica: RedisProcess | None = None
        if replica:
            replica_port = free_port()
            self.replica = RedisProcess(
                server_args(self.directory.path, replica_port, "--replicaof", "127.0.0.1", str(master.port)),
                replica_port,
            )
            self.replica.start()
            master_client = redis.Redis(host="127.0.0.1", port=master.port, socket_timeout=5)
            _wait(
                lambda: master_client.info("replication").get("connected_slaves") == 1, "the replica is not connected"
            )
            master_client.close()
        port = free_port()
        lines = ["bind 127.0.0.1", f"dir {self.directory.path}"]
        if tls is None:
            lines.append(f"port {port}")
        else:
            lines += ["port 0", f"tls-port {port}", f"tls-cert-file {tls.cert}", f"tls-key-file {tls.key}",
                      f"tls-ca-cert-file {tls.ca}", "tls-auth-clients no"]  # fmt: skip
        if password:
            lines.append(f"requirepass {password}")
        lines += [
            f"sentinel monitor {SERVICE} 127.0.0.1 {monitored_port or master.port} 1",
            f"sentinel down-after-milliseconds {SERVICE} 60000",
        ]
        conf = Path(self.directory.path) / "sentinel.conf"
        conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.sentinel = RedisProcess([binary, str(conf), "--sentinel"], port, tls=tls is not None)
        self.sentinel.start()
        self.client_options: dict[str, object] = {"password": password} if password else {}
        if tls is not None:
            self.client_options.update({"ssl": True, "ssl_ca_certs": str(tls.ca)})
        if replica:
            sentinel_client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5, **self.client_options)  # type: ignore[arg-type]
            _wait(lambda: len(sentinel_client.sentinel_slaves(SERVICE)) == 1, "the Sentinel does not see the replica")
            sentinel_client.close()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.sentinel.port}"

    def close(self) -> None:
        self.sentinel.stop()
        if self.replica is not None:
            self.replica.stop()
        self.directory.close()


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
async def sentinel_settings(settings, sentinel_setup: SentinelSetup) -> AsyncIterator[config.Settings]:  # type: ignore[no-untyped-def]
    settings.redis.url = None
    settings.redis.sentinels = sentinel_setup.address
    settings.redis.servicename = SERVICE
    settings.redis.options = {"client_name": CLIENT_NAME}
    yield settings
    await redis_utils.cleanup()


async def _run_one(check: health_checks.Check) -> health_checks.EntityResult:
    factory = health_checks.Factory()
    factory.add(check)
    (entity,) = (await factory.run()).entities
    return entity


# ------------------------------------------------------------------------------------------------ payload


async def test_sentinel_pings_master_and_replica(sentinel_settings, sentinel_setup: SentinelSetup) -> None:  # type: ignore[no-untyped-def]
    assert sentinel_setup.replica is not None
    assert _service_clients(sentinel_setup.replica.port) == 0
    entity = await _run_one(health_checks.Redis())
    assert entity.status_code == 200
    assert entity.payload["master"] == "ok"
    assert entity.payload["master_address"] == f"127.0.0.1:{sentinel_setup.master.port}"
    assert entity.payload["replicas"] == [f"127.0.0.1:{sentinel_setup.replica.port}"]
    assert entity.payload["replica"] == "ok"
    assert entity.payload["redis"] == f"sentinel {sentinel_setup.address} service {SERVICE}"
    assert _service_clients(sentinel_setup.replica.port) == 1  # the replica itself was reached
    assert _service_clients(sentinel_setup.master.port) == 1


async def test_sentinel_master_down(sentinel_settings, sentinel_setup: SentinelSetup) -> None:  # type: ignore[no-untyped-def]
    sentinel_setup.master.stop()
    entity = await _run_one(health_checks.Redis(timeout=10))
    assert entity.status_code == 500
    assert entity.payload["master"] != "ok"
    assert "master: " in entity.payload["error"]


@pytest.fixture
def lonely_master(own_redis_server: RedisServer) -> Iterator[SentinelSetup]:
    setup = SentinelSetup(own_redis_server, replica=False)
    yield setup
    setup.close()


async def test_no_replica_is_reported_as_such(settings, lonely_master: SentinelSetup) -> None:  # type: ignore[no-untyped-def]
    settings.redis.url = None
    settings.redis.sentinels = lonely_master.address
    settings.redis.servicename = SERVICE
    try:
        entity = await _run_one(health_checks.Redis())
        assert entity.status_code == 200
        assert entity.payload["replica"] == "no replica"
        assert entity.payload["replicas"] == []
        assert entity.payload["master"] == "ok"
        assert entity.payload["master_address"] == f"127.0.0.1:{lonely_master.master.port}"
        required = await _run_one(health_checks.Redis(name="with-replica", replica_required=True))
        assert required.status_code == 500
        assert required.payload["error"] == "replica: no replica"
    finally:
        await redis_utils.cleanup()


# ---------------------------------------------------------------------------------------- Sentinel's own options


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return TlsFiles(tmp_path_factory.mktemp("c2c-sentinel-tls"))


@pytest.fixture(params=["password", "password+tls"])
def protected_sentinel(
    request: pytest.FixtureRequest, own_redis_server: RedisServer, tls_files: TlsFiles
) -> Iterator[SentinelSetup]:
    tls = tls_files if request.param == "password+tls" else None
    setup = SentinelSetup(own_redis_server, password=SENTINEL_PASSWORD, tls=tls)
    yield setup
    setup.close()


async def test_protected_sentinel_with_sentinel_options(
    monkeypatch: pytest.MonkeyPatch, protected_sentinel: SentinelSetup
) -> None:
    monkeypatch.setenv("C2C__REDIS__SENTINELS", protected_sentinel.address)
    monkeypatch.setenv("C2C__REDIS__SERVICENAME", SERVICE)
    monkeypatch.setenv("C2C__REDIS__SENTINEL_OPTIONS", json.dumps(protected_sentinel.client_options))
    loaded = config.load_settings()
    assert loaded.redis.sentinel_options["password"] == SENTINEL_PASSWORD
    monkeypatch.setattr(config, "settings", loaded)
    try:
        entity = await _run_one(health_checks.Redis())
        assert entity.status_code == 200, entity.payload
        assert entity.payload["master"] == "ok"
        assert entity.payload["replica"] == "ok"
        assert SENTINEL_PASSWORD not in json.dumps(entity.payload)
        await redis_utils.cleanup()
        # Without the Sentinel's password the master cannot be found: unhealthy, and still no password shown.
        wrong = dict(protected_sentinel.client_options, password="Not-The-Sentinel-Pass")
        monkeypatch.setattr(config.settings.redis, "sentinel_options", wrong)
        failed = await _run_one(health_checks.Redis(timeout=10))
        assert failed.status_code == 500
        assert "MasterNotFoundError" in failed.payload["master"]
        assert "Not-The-Sentinel-Pass" not in json.dumps(failed.payload)
    finally:
        await redis_utils.cleanup()


def test_sentinel_options_tls_without_ssl_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("C2C__REDIS__SENTINELS", "127.0.0.1:26379")
    monkeypatch.setenv("C2C__REDIS__SERVICENAME", SERVICE)
    monkeypatch.setenv("C2C__REDIS__SENTINEL_OPTIONS", "ssl_ca_certs=/ca.pem")
    with pytest.raises(config.SettingsError, match="C2C__REDIS__SENTINEL_OPTIONS: ssl_ca_certs need a TLS connection"):
        config.load_settings()


# ------------------------------------------------------------------------------------------------ dead Sentinels first


def _dead_first(settings: config.Settings, dead: str, setup: SentinelSetup) -> None:
    settings.redis.url = None
    settings.redis.sentinels = f"{dead},{setup.address}"
    settings.redis.servicename = SERVICE
    settings.redis.connect_timeout = timedelta(seconds=0.3)
    settings.redis.socket_timeout = timedelta(seconds=0.3)


@pytest.mark.parametrize(
    ("sentinel_options", "expected"),
    [({}, 0.4), ({"socket_timeout": 1.2}, 1.2)],
    ids=["the-connect-timeout", "its-own-socket-timeout"],
)
async def test_a_black_holed_sentinel_costs_one_sentinel_timeout(  # type: ignore[no-untyped-def]
    settings, sentinel_setup: SentinelSetup, black_hole: BlackHole, sentinel_options: dict[str, float], expected: float
) -> None:
    """A Sentinel that accepts and never answers is waited for once, as long as an unreachable one (the connect
    timeout, shorter than the data connections' socket timeout), or its own C2C__REDIS__SENTINEL_OPTIONS timeout."""
    _dead_first(settings, f"127.0.0.1:{black_hole.port}", sentinel_setup)
    settings.redis.connect_timeout = timedelta(seconds=0.4)
    settings.redis.socket_timeout = timedelta(seconds=8)
    settings.redis.retries = 2
    settings.redis.sentinel_options = sentinel_options
    try:
        clients = redis_utils.get()
        assert clients is not None
        assert await clients.master.set("c2c-black-holed-sentinel", "1")
        _wait(lambda: len(black_hole.held) == 1, "the client did not give up the black-holed Sentinel")
        assert len(black_hole.accepted) == 1
        assert expected * 0.9 <= black_hole.held[0] < 6, black_hole.held  # well under the socket timeout (8)
    finally:
        await redis_utils.cleanup()


@pytest.fixture
def proxied_master(own_redis_server: RedisServer) -> Iterator[tuple[SentinelSetup, CuttingProxy]]:
    """A Sentinel that knows the master at the address of a proxy that drops the connections sending a marker."""
    with CuttingProxy(own_redis_server.port, marker=b"c2c-cut-here") as proxy:
        setup = SentinelSetup(own_redis_server, replica=False, monitored_port=proxy.port)
        yield setup, proxy
        setup.close()


async def test_sentinel_data_clients_retry_a_dropped_connection(  # type: ignore[no-untyped-def]
    settings, proxied_master: tuple[SentinelSetup, CuttingProxy]
) -> None:
    """The data clients keep C2C__REDIS__RETRIES: a dropped connection is tried again twice, on new connections."""
    setup, proxy = proxied_master
    settings.redis.url = None
    settings.redis.sentinels = setup.address
    settings.redis.servicename = SERVICE
    settings.redis.retries = 2
    try:
        clients = redis_utils.get()
        assert clients is not None
        assert await clients.master.set("c2c-through-the-proxy", "1")
        with pytest.raises(redis.exceptions.ConnectionError):
            await clients.master.get("c2c-cut-here")
        assert proxy.marked == 3
        assert await clients.master.get("c2c-through-the-proxy") == b"1"
    finally:
        await redis_utils.cleanup()


async def test_black_holed_sentinel_first_costs_one_attempt(
    settings, sentinel_setup: SentinelSetup, black_hole: BlackHole
) -> None:  # type: ignore[no-untyped-def]
    _dead_first(settings, f"127.0.0.1:{black_hole.port}", sentinel_setup)
    settings.redis.retries = 3  # the data clients' retries do not multiply the attempts on a dead Sentinel
    try:
        clients = redis_utils.get()
        assert clients is not None
        assert await clients.master.set("c2c-dead-sentinel", "1")
        assert len(black_hole.accepted) == 1  # asked once, not retried: the next Sentinel was the retry
        entity = await _run_one(health_checks.Redis(timeout=10))
        assert entity.status_code == 200, entity.payload
        assert entity.payload["master_address"] == f"127.0.0.1:{sentinel_setup.master.port}"
        # The Sentinel that answered is asked first from then on.
        assert len(black_hole.accepted) == 1
    finally:
        await redis_utils.cleanup()


@pytest.mark.parametrize("kind", ["refused", "unreachable"])
async def test_dead_sentinel_first_still_finds_the_master(settings, sentinel_setup: SentinelSetup, kind: str) -> None:  # type: ignore[no-untyped-def]
    hole = Unreachable() if kind == "unreachable" else None
    dead = f"127.0.0.1:{hole.port if hole else free_port()}"
    _dead_first(settings, dead, sentinel_setup)
    try:
        entity = await _run_one(health_checks.Redis(timeout=10))
        assert entity.status_code == 200, entity.payload
        assert entity.payload["master"] == "ok"
        assert entity.payload["replica"] == "ok"
    finally:
        await redis_utils.cleanup()
        if hole is not None:
            hole.close()
