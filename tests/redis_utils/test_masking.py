"""Redis credentials are never shown: one masking function for URLs, unreadable URLs refused without showing
them, and no password (user-info or ``?password=``) in any log line or response of the package, with Redis
up (an ACL user on a real redis-server) and down.
"""

from __future__ import annotations

import logging
import os
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

import c2casgiutils
from c2casgiutils import _sensitive, config, health_checks, redis_utils
from tests.redis_processes import (
    ACL_PASSWORD,
    ACL_USER,
    RedisProcess,
    TemporaryDirectory,
    acl_args,
    acl_redis,
    server_args,
)
from tests.servers import free_port

pytestmark = pytest.mark.timeout(120)

AUTH_SECRET = "masking-test-secret-with-enough-length-0123456789"
ADMIN = {"X-API-Key": AUTH_SECRET}
ENCODED = urllib.parse.quote(ACL_PASSWORD, safe="")


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:secret@host:6379/1", "redis://:***@host:6379/1"),
        ("redis://app:secret@host/1", "redis://app:***@host/1"),
        ("rediss://user:p%40ss@[::1]:6380/0", "rediss://user:***@[::1]:6380/0"),
        ("redis://host/0?username=app&password=secret", "redis://host/0?username=app&password=***"),
        ("redis://host/0?password=secret&db=2", "redis://host/0?password=***&db=2"),
        ("unix:///run/redis.sock?db=1&password=secret", "unix:///run/redis.sock?db=1&password=***"),
        ("redis://host/0?password=sec#ret", "redis://host/0?password=***#***"),
        ("redis://:sec#ret@host:6379/0", "redis://host:6379 (unparsable URL)"),
        ("redis://app:sec/ret@host:6379/0", "redis://host:6379 (unparsable URL)"),
        ("redis://:12/34secret@host/0", "redis://host (unparsable URL)"),
        ("redis://:sec?ret@host/0", "redis://<host hidden> (unparsable URL)"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert redis_utils.mask_url(url) == masked
    assert redis_utils.mask_url is _sensitive.mask_url  # one function, used everywhere
    for piece in ("secret", "sec", "ret"):
        assert piece not in masked.replace("<host hidden>", "")


BROKEN_PASSWORDS = ["Xq7#Zv9k", "Lm3/Np8w", "Rt5?Ys2b", "Hj4#Kd6/Wq1?Ze9@Vb3:Cx0", "12/34Gh78"]


@pytest.mark.parametrize("password", BROKEN_PASSWORDS)
@pytest.mark.parametrize("user", ["", "app"])
def test_unreadable_url_refused_without_showing_it(monkeypatch: pytest.MonkeyPatch, password: str, user: str) -> None:
    url = f"redis://{user}:{password}@redis.example.org:6380/0"
    monkeypatch.setenv("C2C__REDIS__URL", url)
    with pytest.raises(config.SettingsError) as raised:
        config.load_settings()
    message = str(raised.value)
    assert "C2C__REDIS__URL" in message
    assert "percent-encode" in message
    assert "%23" in message
    assert "%2F" in message
    pieces = [piece for piece in password.translate(str.maketrans("#/?@:", "     ")).split() if len(piece) >= 3]
    for piece in pieces:
        assert piece not in message.replace("redis.example.org", "")
    # Settings changed in code are checked again when the clients are built, with the same message.
    monkeypatch.delenv("C2C__REDIS__URL")
    settings = config.load_settings()
    settings.redis.url = url
    monkeypatch.setattr(config, "settings", settings)
    with pytest.raises(config.SettingsError) as at_build:
        redis_utils.build()
    assert "percent-encode" in str(at_build.value)
    for piece in pieces:
        assert piece not in str(at_build.value).replace("redis.example.org", "")


def test_unreadable_url_message_shows_scheme_and_host() -> None:
    with pytest.raises(config.SettingsError) as raised:
        config.load_settings(redis={"url": "rediss://app:pa#ss@redis.example.org:6380/0"})
    assert "C2C__REDIS__URL (rediss://redis.example.org:6380) cannot be read as written" in str(raised.value)


@pytest.mark.parametrize("variable", ["C2C__REDIS__OPTIONS", "C2C__REDIS__SENTINEL_OPTIONS"])
@pytest.mark.parametrize("value", ["password=Opt-Secret-42,socket_timeout", '{"password": "Opt-Secret-42"'])
def test_invalid_options_are_refused_without_echoing_them(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(config.SettingsError) as raised:
        config.load_settings()
    assert variable in str(raised.value)
    assert "Opt-Secret-42" not in str(raised.value)


SECRET = "Opt-Secret-42"
REFUSED_REDIS_SETTINGS = {
    "options: an item without '='": {"options": f"password={SECRET},socket_timeout"},
    "options: unfinished JSON": {"options": f'{{"password": "{SECRET}"'},
    "options: JSON that is not an object": {"options": f'["password", "{SECRET}"]'},
    "sentinel options: an item without '='": {"sentinel_options": f"password={SECRET},ssl"},
    # Readable values refused by a check across the fields of the section, whose input is the whole section.
    "TLS options without TLS": {
        "url": f"redis://:{SECRET}@redis:6379/0",
        "options": f"password={SECRET},ssl_ca_certs=/ca.pem",
    },
    "a URL and Sentinels": {"url": f"redis://:{SECRET}@redis:6379/0", "sentinels": "s:26379", "servicename": "m"},
    "two databases": {"url": f"redis://:{SECRET}@redis:6379/1", "options": f"db=2,password={SECRET}"},
}


def _build_settings(how: str, values: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    if how in ("environment", "load_settings"):
        for field, value in values.items():
            monkeypatch.setenv(f"C2C__REDIS__{field.upper()}", value)
        config.load_settings() if how == "load_settings" else config.Settings()
    elif how == "Settings(redis=...)":
        config.Settings(redis=values)
    elif how == "Redis(...)":
        config.Redis(**values)
    else:
        config.Redis.model_validate(values)


@pytest.mark.parametrize("how", ["environment", "load_settings", "Settings(redis=...)", "Redis(...)", "model_validate"])
@pytest.mark.parametrize("values", list(REFUSED_REDIS_SETTINGS.values()), ids=list(REFUSED_REDIS_SETTINGS))
def test_no_secret_in_any_settings_error(monkeypatch: pytest.MonkeyPatch, how: str, values: dict[str, str]) -> None:
    for name in list(os.environ):
        if name.startswith("C2C__REDIS__"):
            monkeypatch.delenv(name)
    with pytest.raises(ValueError) as raised:  # SettingsError from load_settings, pydantic's ValidationError else
        _build_settings(how, values, monkeypatch)
    error = raised.value
    texts = [str(error), repr(error)]
    if isinstance(error, ValidationError):
        texts += [repr(error.errors()), error.json()]
    for text in texts:
        assert SECRET not in text
    assert "C2C__REDIS__" in str(error)  # the message still names what to fix


def test_safe_error_removes_every_configured_credential(settings) -> None:  # type: ignore[no-untyped-def]
    settings.redis.url = "redis://app:url-Pass%2Fword@host/0?password=query-Password"
    settings.redis.options = {"password": "option-Password"}
    settings.redis.sentinel_options = {"password": "sentinel-Password"}
    text = "failed: url-Pass/word url-Pass%2Fword query-Password option-Password sentinel-Password redis://app:url-Pass%2Fword@host/0"
    error = RuntimeError(text)
    safe = redis_utils.safe_error(error)
    assert safe.startswith("RuntimeError: failed: ")
    for secret in ("url-Pass", "query-Password", "option-Password", "sentinel-Password"):
        assert secret not in safe


# ------------------------------------------------------------------------------------------------ the package


class _Collect(logging.Handler):
    """Every record of every logger, formatted with its traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def all_logs() -> Iterator[_Collect]:
    handler = _Collect()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(previous)


@pytest.fixture
def acl_server() -> Iterator[RedisProcess]:
    yield from acl_redis("mask")


@pytest.fixture(params=["user-info", "query"])
async def package(
    request: pytest.FixtureRequest, settings, acl_server: RedisProcess
) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    """The whole package started on the ACL server, with the password in one of both URL forms."""
    if request.param == "user-info":
        settings.redis.url = f"redis://{ACL_USER}:{ENCODED}@127.0.0.1:{acl_server.port}/0"
    else:
        settings.redis.url = f"redis://127.0.0.1:{acl_server.port}/0?username={ACL_USER}&password={ENCODED}"
    settings.redis.sentinels = None
    settings.redis.connect_timeout = timedelta(seconds=0.3)
    settings.redis.socket_timeout = timedelta(seconds=0.3)
    settings.broadcast.timeout = timedelta(seconds=1)
    settings.auth.secret = AUTH_SECRET
    app = FastAPI()
    app.mount("/c2c", c2casgiutils.app)
    health_checks_factory = health_checks.Factory()
    health_checks_factory.add(health_checks.Redis(timeout=5))
    await c2casgiutils.startup(app)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service.test") as http:
            http.checks = health_checks_factory  # type: ignore[attr-defined]
            yield http
    finally:
        await c2casgiutils.shutdown(app)


async def _visit_everything(http: httpx.AsyncClient) -> list[tuple[int, str]]:
    """Every endpoint that talks to Redis, and the health check's payload."""
    name = "tests.redis_masking"
    responses = [
        await http.post("/c2c/logging/level", json={"name": name, "level": "DEBUG"}, headers=ADMIN),
        await http.get("/c2c/logging/overrides", headers=ADMIN),
        await http.delete(f"/c2c/logging/overrides/{name}", headers=ADMIN),
        await http.get("/c2c/versions", headers=ADMIN),
        await http.get("/c2c/debug/memory?limit=3", headers=ADMIN),
    ]
    result = [(response.status_code, response.text) for response in responses]
    entity = (await http.checks.run()).entities[0]  # type: ignore[attr-defined]
    result.append((entity.status_code, str(entity.payload)))
    return result


def _assert_hidden(texts: list[str]) -> None:
    for text in texts:
        assert ACL_PASSWORD not in text
        assert ENCODED not in text
        assert urllib.parse.quote_plus(ACL_PASSWORD) not in text


async def test_no_password_with_redis_up_then_down(
    package: httpx.AsyncClient, acl_server: RedisProcess, all_logs: _Collect
) -> None:
    up = await _visit_everything(package)
    assert up[0][0] == 200, up[0][1]  # the logging change is stored and applied
    assert up[-1][0] == 200, up[-1][1]  # the health check
    acl_server.stop()
    down = await _visit_everything(package)
    assert [status for status, _ in down] == [503, 503, 503, 503, 503, 500], down
    assert any("Redis" in text for _, text in down)
    _assert_hidden([text for _, text in up + down])
    _assert_hidden(all_logs.lines)
    assert any("127.0.0.1" in line for line in all_logs.lines)  # the logs do name the Redis they talk about


@pytest.mark.slow
@pytest.mark.parametrize("form", ["user-info", "query"])
def test_no_password_in_the_logs_of_two_uvicorn_workers(form: str) -> None:
    """The service as deployed: 2 uvicorn workers with JSON logs, Redis up, then stopped."""
    from tests.admin_fixtures import SECRET, UvicornService

    directory = TemporaryDirectory("c2c-redis-mask-uvicorn-")
    port = free_port()
    server = RedisProcess(server_args(directory.path, port, *acl_args()), port)
    server.start()
    if form == "user-info":
        url = f"redis://{ACL_USER}:{ENCODED}@127.0.0.1:{port}/0"
    else:
        url = f"redis://127.0.0.1:{port}/0?username={ACL_USER}&password={ENCODED}"
    service = UvicornService(
        env={
            "C2C__REDIS__URL": url,
            "C2C__REDIS__CONNECT_TIMEOUT": "0.5",
            "C2C__REDIS__SOCKET_TIMEOUT": "0.5",
            "C2C__BROADCAST__TIMEOUT": "2",
        },
        workers=2,
    )
    try:
        service.start(timeout=60)
        admin = {"X-API-Key": SECRET}
        statuses = []
        for _ in range(2):
            with httpx.Client(base_url=service.url, timeout=30, headers=admin) as http:
                name = "tests.redis_masking.uvicorn"
                statuses += [
                    http.post("/c2c/logging/level", json={"name": name, "level": "DEBUG"}).status_code,
                    http.get("/c2c/versions").status_code,
                    http.get("/c2c/debug/memory?limit=2").status_code,
                ]
            server.stop()
        assert statuses[:3] == [200, 200, 200]
        assert statuses[3:] == [503, 503, 503]
    finally:
        service.stop()
        logs = service.logs_text()
        service.close()
        server.stop()
        directory.close()
    assert "Redis" in logs
    _assert_hidden([logs])
