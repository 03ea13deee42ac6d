"""Redis options checked at start-up, against a real TLS redis-server (CA made by openssl) and an ACL user.

``ssl=True`` with a ``redis://`` URL connects with TLS; TLS options without TLS, ``ssl=False`` with
``rediss://``, unknown options and two different databases are refused with a message naming the variable;
``C2C__REDIS__DB`` applies when the URL names no database.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio

from c2casgiutils import config, health_checks, redis_utils
from tests.redis_processes import (
    ACL_PASSWORD,
    ACL_USER,
    RedisProcess,
    TlsFiles,
    acl_redis,
    tls_acl_redis,
)

pytestmark = pytest.mark.timeout(120)

ENCODED_PASSWORD = urllib.parse.quote(ACL_PASSWORD, safe="")


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return TlsFiles(tmp_path_factory.mktemp("c2c-redis-tls"))


@pytest.fixture(scope="module")
def tls_server(tls_files: TlsFiles) -> Iterator[RedisProcess]:
    """TLS only (no plain port), with the ACL user."""
    yield from tls_acl_redis("tls", tls_files)


@pytest.fixture(scope="module")
def acl_server() -> Iterator[RedisProcess]:
    """Plain TCP, with the ACL user and the default user disabled."""
    yield from acl_redis("acl")


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No C2C__ variable from the outside: each test sets its own, then loads the settings."""
    import os

    for name in list(os.environ):
        if name.upper().startswith("C2C__"):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture
async def use(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[object]:
    """Install settings loaded from the environment as ``config.settings``; close the clients afterwards."""

    def install(**variables: str) -> config.Settings:
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        loaded = config.load_settings()
        monkeypatch.setattr(config, "settings", loaded)
        return loaded

    yield install
    await redis_utils.cleanup()


async def _check() -> health_checks.EntityResult:
    factory = health_checks.Factory()
    factory.add(health_checks.Redis(timeout=10))
    (entity,) = (await factory.run()).entities
    return entity


def _assert_no_password(text: str) -> None:
    assert ACL_PASSWORD not in text
    assert ENCODED_PASSWORD not in text


# ------------------------------------------------------------------------------------------------ TLS


async def test_rediss_url_with_the_ca(environment, use, tls_server: RedisProcess, tls_files: TlsFiles) -> None:  # type: ignore[no-untyped-def]
    use(
        C2C__REDIS__URL=f"rediss://{ACL_USER}:{ENCODED_PASSWORD}@127.0.0.1:{tls_server.port}/0",
        C2C__REDIS__OPTIONS=f"ssl_ca_certs={tls_files.ca}",
    )
    clients = redis_utils.get()
    assert clients is not None
    assert await clients.master.acl_whoami() in (ACL_USER, ACL_USER.encode())
    entity = await _check()
    assert entity.status_code == 200, entity.payload
    assert entity.payload["master"] == "ok"
    assert entity.payload["master_address"] == f"127.0.0.1:{tls_server.port}"
    _assert_no_password(json.dumps(entity.payload))


async def test_documented_example_ssl_true_with_a_redis_url_connects_with_tls(  # type: ignore[no-untyped-def]
    environment, use, tls_server: RedisProcess, tls_files: TlsFiles
) -> None:
    # The example of docs/settings.md, as written; the test CA is made a trusted one for this process.
    environment.setenv("SSL_CERT_FILE", str(tls_files.ca))
    settings = use(
        C2C__REDIS__URL=f"redis://127.0.0.1:{tls_server.port}/0?username={ACL_USER}&password={ENCODED_PASSWORD}",
        C2C__REDIS__OPTIONS="socket_timeout=5,ssl=True",
    )
    assert settings.redis.options == {"socket_timeout": 5, "ssl": True}
    clients = redis_utils.get()
    assert clients is not None
    assert issubclass(clients.master.connection_pool.connection_class, redis.asyncio.SSLConnection)
    assert await clients.master.ping()
    assert clients.master.connection_pool.connection_kwargs["socket_timeout"] == 5
    assert redis_utils.describe().startswith("redis://")  # the setting as written, masked
    _assert_no_password(redis_utils.describe())


async def test_ssl_true_with_the_ca_option(environment, use, tls_server: RedisProcess, tls_files: TlsFiles) -> None:  # type: ignore[no-untyped-def]
    use(
        C2C__REDIS__URL=f"redis://{ACL_USER}:{ENCODED_PASSWORD}@127.0.0.1:{tls_server.port}",
        C2C__REDIS__OPTIONS=f"ssl=True,ssl_ca_certs={tls_files.ca}",
    )
    assert (await _check()).status_code == 200


async def test_untrusted_certificate_is_an_unhealthy_check(environment, use, tls_server: RedisProcess) -> None:  # type: ignore[no-untyped-def]
    use(C2C__REDIS__URL=f"rediss://{ACL_USER}:{ENCODED_PASSWORD}@127.0.0.1:{tls_server.port}/0")
    entity = await _check()
    assert entity.status_code == 500
    assert entity.payload["master"].startswith("ConnectionError")  # newer redis-py add CERTIFICATE_VERIFY_FAILED
    _assert_no_password(json.dumps(entity.payload))


async def test_plain_connection_to_the_tls_port_fails(environment, use, tls_server: RedisProcess) -> None:  # type: ignore[no-untyped-def]
    use(C2C__REDIS__URL=f"redis://{ACL_USER}:{ENCODED_PASSWORD}@127.0.0.1:{tls_server.port}/0")
    entity = await _check()
    assert entity.status_code == 500
    _assert_no_password(json.dumps(entity.payload))


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("redis://127.0.0.1:6379/0", "ssl_ca_certs=/etc/ssl/ca.pem", "ssl_ca_certs need a TLS connection"),
        ("redis://127.0.0.1:6379/0", "ssl_cert_reqs=none,ssl_check_hostname=false", "ssl_cert_reqs, ssl_check_host"),
        ("rediss://127.0.0.1:6379/0", "ssl=False", "ssl=False contradicts the rediss:// scheme"),
        ("unix:///run/redis.sock", "ssl=True", "ssl=True cannot be used with a unix:// socket"),
        ("redis://127.0.0.1:6379/0", "ssl=yes", "ssl must be true or false"),
        ("http://127.0.0.1:6379/0", "", "expected a redis://, rediss:// or unix:// URL"),
    ],
)
def test_tls_settings_that_cannot_work_are_refused_at_load(environment, url: str, options: str, message: str) -> None:  # type: ignore[no-untyped-def]
    environment.setenv("C2C__REDIS__URL", url)
    environment.setenv("C2C__REDIS__OPTIONS", options)
    with pytest.raises(config.SettingsError, match="C2C__REDIS__") as raised:
        config.load_settings()
    assert message in str(raised.value)


def test_the_same_checks_at_build(settings) -> None:  # type: ignore[no-untyped-def]
    # Settings changed in code skip the model's validation: building the clients checks again.
    settings.redis.url = "redis://127.0.0.1:6379/0"
    settings.redis.options = {"ssl_ca_certs": "/etc/ssl/ca.pem"}
    with pytest.raises(config.SettingsError, match="C2C__REDIS__OPTIONS: ssl_ca_certs need a TLS connection"):
        redis_utils.build()


def test_unknown_option_is_refused_at_build(settings) -> None:  # type: ignore[no-untyped-def]
    settings.redis.url = "redis://127.0.0.1:6379/0"
    settings.redis.options = {"socket_timeout": 5, "sokcet_keepalive": True}
    with pytest.raises(config.SettingsError, match="C2C__REDIS__OPTIONS: .*'sokcet_keepalive'"):
        redis_utils.build()


# ------------------------------------------------------------------------------------------------ ACL


@pytest.mark.parametrize("form", ["user-info", "query"])
async def test_acl_user_in_both_url_forms(environment, use, acl_server: RedisProcess, form: str) -> None:  # type: ignore[no-untyped-def]
    if form == "user-info":
        url = f"redis://{ACL_USER}:{ENCODED_PASSWORD}@127.0.0.1:{acl_server.port}/0"
    else:
        url = f"redis://127.0.0.1:{acl_server.port}/0?username={ACL_USER}&password={ENCODED_PASSWORD}"
    use(C2C__REDIS__URL=url)
    clients = redis_utils.get()
    assert clients is not None
    assert await clients.master.acl_whoami() in (ACL_USER, ACL_USER.encode())
    entity = await _check()
    assert entity.status_code == 200
    _assert_no_password(json.dumps(entity.payload))
    _assert_no_password(redis_utils.describe())


@pytest.mark.parametrize("form", ["user-info", "query"])
async def test_wrong_acl_password_is_unhealthy_without_showing_it(
    environment, use, acl_server: RedisProcess, form: str
) -> None:  # type: ignore[no-untyped-def]
    wrong = "Wrong-Acl-Password-991"
    if form == "user-info":
        url = f"redis://{ACL_USER}:{wrong}@127.0.0.1:{acl_server.port}/0"
    else:
        url = f"redis://127.0.0.1:{acl_server.port}/0?username={ACL_USER}&password={wrong}"
    use(C2C__REDIS__URL=url)
    entity = await _check()
    assert entity.status_code == 500
    assert "AuthenticationError" in entity.payload["master"]
    assert wrong not in json.dumps(entity.payload)


def test_unencoded_password_is_refused_and_the_encoded_one_works(environment, acl_server: RedisProcess) -> None:  # type: ignore[no-untyped-def]
    environment.setenv("C2C__REDIS__URL", f"redis://{ACL_USER}:{ACL_PASSWORD}@127.0.0.1:{acl_server.port}/0")
    with pytest.raises(config.SettingsError) as raised:
        config.load_settings()
    message = str(raised.value)
    assert "percent-encode" in message
    for piece in ("Pa#ss", "ss/w0", "w0rd", "?x@y", "z%1"):
        assert piece not in message
    environment.setenv("C2C__REDIS__URL", f"redis://{ACL_USER}:{ENCODED_PASSWORD}@127.0.0.1:{acl_server.port}/0")
    loaded = config.load_settings()
    import redis as sync_redis

    client = sync_redis.Redis.from_url(loaded.redis.url or "", socket_timeout=5, decode_responses=True)
    try:
        assert client.acl_whoami() == ACL_USER  # redis-py decodes the percent-encoded password
    finally:
        client.close()


# ------------------------------------------------------------------------------------------------ database


async def _db_of(client: redis.asyncio.Redis, server: RedisProcess) -> int:
    """In which database of ``server`` a key written by ``client`` landed."""
    key = "c2c-which-db"
    await client.set(key, "here")
    probe = redis.asyncio.Redis(
        host="127.0.0.1", port=server.port, username=ACL_USER, password=ACL_PASSWORD, socket_timeout=5
    )
    try:
        for db in range(16):
            await probe.execute_command("SELECT", db)
            if await probe.get(key) is not None:
                await probe.delete(key)
                return db
    finally:
        await probe.aclose()
    raise AssertionError("key not found in any database")


@pytest.mark.parametrize(
    ("path", "db_variable", "expected"),
    [("/0", None, 0), ("", "5", 5), ("/", "6", 6), ("/3", None, 3), ("/3", "3", 3), ("?db=4", None, 4), ("", None, 0)],
)
async def test_database_applied(  # type: ignore[no-untyped-def]
    environment, use, acl_server: RedisProcess, path: str, db_variable: str | None, expected: int
) -> None:
    variables = {"C2C__REDIS__URL": f"redis://{ACL_USER}:{ENCODED_PASSWORD}@127.0.0.1:{acl_server.port}{path}"}
    if db_variable is not None:
        variables["C2C__REDIS__DB"] = db_variable
    use(**variables)
    clients = redis_utils.get()
    assert clients is not None
    assert await _db_of(clients.master, acl_server) == expected


@pytest.mark.parametrize(
    ("url", "variables", "message"),
    [
        ("redis://127.0.0.1:6379/3", {"C2C__REDIS__DB": "5"}, "C2C__REDIS__URL names 3, C2C__REDIS__DB names 5"),
        ("redis://127.0.0.1:6379/3", {"C2C__REDIS__DB": "0"}, "C2C__REDIS__URL names 3, C2C__REDIS__DB names 0"),
        ("redis://127.0.0.1:6379/?db=2", {"C2C__REDIS__OPTIONS": "db=1"}, "db in C2C__REDIS__OPTIONS names 1"),
        ("redis://127.0.0.1:6379/2?db=1", {}, "the path names database 2, the query db=1"),
        ("redis://127.0.0.1:6379/zero", {}, "the path must be a database number"),
    ],
)
def test_databases_that_disagree_are_refused(environment, url: str, variables: dict[str, str], message: str) -> None:  # type: ignore[no-untyped-def]
    environment.setenv("C2C__REDIS__URL", url)
    for name, value in variables.items():
        environment.setenv(name, value)
    with pytest.raises(config.SettingsError) as raised:
        config.load_settings()
    assert message in str(raised.value)


def test_database_set_in_code_is_applied_or_refused(settings) -> None:  # type: ignore[no-untyped-def]
    settings.redis.url = "redis://127.0.0.1:6379"
    settings.redis.db = 7
    clients = redis_utils.build()
    assert clients is not None
    assert clients.master.connection_pool.connection_kwargs["db"] == 7
    settings.redis.url = "redis://127.0.0.1:6379/1"
    with pytest.raises(config.SettingsError, match="keep one"):
        redis_utils.build()


def test_settings_examples_parse() -> None:
    # docs/settings.md shows the field descriptions: every Redis example there reads as documented.
    assert config.parse_key_values("socket_timeout=5,ssl=True") == {"socket_timeout": 5, "ssl": True}
    assert config.parse_key_values("ssl=True,ssl_ca_certs=/ca.pem") == {"ssl": True, "ssl_ca_certs": "/ca.pem"}
    docs = (Path(__file__).parent.parent / "docs" / "settings.md").read_text(encoding="utf-8")
    assert "'socket_timeout=5,ssl=True'" in docs
    assert "ssl=True with a redis:// URL connects with TLS" in docs
