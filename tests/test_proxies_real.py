"""ForwardedHeadersMiddleware behind real nginx, Apache httpd and HAProxy.

Each proxy runs with its own configuration (``tests/proxy_servers.py``) in front of the test service under a
real uvicorn; the client connects from 127.0.0.2, so it is never the trusted proxy (127.0.0.1), and sends
forged values of every forwarded field with each request. The groups:

- the configurations of ``examples/proxies/`` (documented in ``docs/proxies.md``) with the settings they
  document, ``X-Forwarded-*`` and ``Forwarded`` (plus ``X-Forwarded-Prefix``) for each of the three proxies, at
  the root and under a ``/svc/`` prefix the proxy strips: everything the service derives from the request is
  what the public URL implies;
- the configurations people copy, with the default ``FIELDS`` and ``trusted_hosts="*"``: no client-sent
  prefix or client address gets through;
- the same copied configurations with the ``FIELDS`` that ``docs/proxies.md`` gives for them: no client-sent
  value of any field gets through; with every field listed: exactly the fields of the docs' table are the
  client's;
- two appending proxies in a row with ``HOPS=2``: the client address is the real one.

Malformed values sent through every proxy never give a 5xx.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import missing
from tests.proxy_servers import PREFIX, PROXIES, PUBLIC_HOST, Certificate, Proxy, ServiceProcess

SECRET = "proxy-test-secret-with-enough-length-0123456789"
CLIENT = "127.0.0.2"
FORGED_CLIENT = "1.2.3.4"
FORGED_PORT = "6666"


@dataclass(frozen=True)
class Setup:
    """A proxy configuration and the settings of the service behind it."""

    proxy: str
    flavour: str  # "recommended" (examples/proxies) or "copied"
    fields: str | None  # C2C__PROXY_HEADERS__FIELDS, None for the default
    trusted_hosts: str = "127.0.0.1"
    hops: int = 1
    behind: str | None = None  # a second proxy (copied configuration) between this one and the service
    # What the configuration tells the service (for the expected URL): the scheme, the port, the prefix.
    sets_proto: bool = True
    keeps_port: bool = True
    sets_prefix: bool = True
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        chain = f"{self.proxy}-{self.behind}" if self.behind else self.proxy
        return f"{chain}-{self.flavour}-{self.fields or 'default'}-{self.trusted_hosts}-{self.hops}".replace(",", "+")

    def environment(self) -> dict[str, str]:
        env = {
            "C2C__AUTH__SECRET": SECRET,
            "C2C__PROXY_HEADERS__TYPE": "x-forwarded",
            "C2C__PROXY_HEADERS__TRUSTED_HOSTS": self.trusted_hosts,
            "C2C__PROXY_HEADERS__HOPS": str(self.hops),
            **self.settings,
        }
        if self.fields is not None:
            env["C2C__PROXY_HEADERS__FIELDS"] = self.fields
        return env


# The settings docs/proxies.md gives for each configuration: X-Forwarded-*, then RFC 7239 Forwarded (TYPE=forwarded)
# with X-Forwarded-Prefix for the prefix, which Forwarded lacks.
FORWARDED_TYPE = {"C2C__PROXY_HEADERS__TYPE": "forwarded"}
RECOMMENDED = [
    Setup("nginx", "recommended", "for,proto,host,port,prefix"),
    Setup("apache", "recommended", "for,proto,host,prefix"),
    Setup("haproxy", "recommended", "for,proto,host,prefix"),
    *(
        Setup(name, "forwarded", "for,proto,host,prefix", settings=FORWARDED_TYPE)
        for name in ("nginx", "apache", "haproxy")
    ),
]
COPIED_DEFAULT = [
    Setup(name, "copied", None, trusted_hosts="*", sets_prefix=False) for name in ("nginx", "apache", "haproxy")
]
COPIED_LISTED = [
    # nginx's snippet: Host $host drops the port; X-Forwarded-Host is the client's.
    Setup("nginx", "copied", "for,proto", keeps_port=False, sets_prefix=False),
    # Apache's ProxyPass: appends X-Forwarded-For and X-Forwarded-Host; no proto at all.
    Setup("apache", "copied", "for,host", sets_proto=False, sets_prefix=False),
    # option forwardfor (+ proto only on TLS): the Host header is the client's own.
    Setup("haproxy", "copied", "for", sets_proto=False, sets_prefix=False),
]


class Running:
    """A setup started: the service and the proxy in front of it."""

    def __init__(self, setup: Setup, certificate: Certificate) -> None:
        self.setup = setup
        self.service = ServiceProcess(setup.environment())
        self.inner: Proxy | None = None
        try:
            port = self.service.port
            if setup.behind is not None:
                self.inner = PROXIES[setup.behind]("copied", port, certificate)
                self.inner.start()
                port = self.inner.http_port
            self.proxy: Proxy = PROXIES[setup.proxy](setup.flavour, port, certificate)
            self.proxy.start()
        except BaseException:
            if self.inner is not None:
                self.inner.close()
            self.service.close()
            raise
        self.client = httpx.Client(
            transport=httpx.HTTPTransport(local_address=CLIENT, verify=False, retries=0), timeout=20
        )

    def close(self) -> None:
        self.client.close()
        self.proxy.close()
        if self.inner is not None:
            self.inner.close()
        self.service.close()

    def scheme(self, tls: bool) -> str:
        """The scheme the service should see."""
        return "https" if tls and self.setup.sets_proto else "http"

    def public(self, tls: bool) -> str:
        """The public URL the client uses (scheme, host and port)."""
        return f"{'https' if tls else 'http'}://{PUBLIC_HOST}:{self.proxy.public_port(tls)}"

    def expected_base(self, tls: bool, prefix: str) -> str:
        """Where the service should think it is published."""
        netloc = f"{PUBLIC_HOST}:{self.proxy.public_port(tls)}" if self.setup.keeps_port else PUBLIC_HOST
        return f"{self.scheme(tls)}://{netloc}{prefix if self.setup.sets_prefix else ''}"

    def forged(self, tls: bool) -> dict[str, str]:
        """A forged value of every forwarded field, of both families; the scheme is the wrong one."""
        wrong_scheme = "http" if self.scheme(tls) == "https" else "https"
        return {
            "X-Forwarded-For": FORGED_CLIENT,
            "X-Forwarded-Host": "evil.example",
            "X-Forwarded-Port": FORGED_PORT,
            "X-Forwarded-Proto": wrong_scheme,
            "X-Forwarded-Prefix": "/evil",
            "Forwarded": f"for={FORGED_CLIENT};host=evil.example;proto={wrong_scheme}",
        }

    def get(
        self, tls: bool, path: str, headers: dict[str, str] | None = None, *, forged: bool = True
    ) -> httpx.Response:
        sent = {"Host": f"{PUBLIC_HOST}:{self.proxy.public_port(tls)}"}
        if forged:
            sent.update(self.forged(tls))
        sent.update(headers or {})
        return self.client.get(self.proxy.url(tls) + path, headers=sent)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    try:
        return Certificate.make(tmp_path_factory.mktemp("certificate"))
    except FileNotFoundError:
        missing("openssl")
        raise


def _start(setup: Setup, certificate: Certificate) -> Iterator[Running]:
    try:
        running = Running(setup, certificate)
    except FileNotFoundError as error:
        missing(str(error.args[0]) if error.args else setup.proxy)
        raise
    yield running
    running.close()


@pytest.fixture(scope="class", params=RECOMMENDED, ids=lambda setup: setup.id)
def recommended(request: pytest.FixtureRequest, certificate: Certificate) -> Iterator[Running]:
    yield from _start(request.param, certificate)


@pytest.fixture(scope="class", params=COPIED_DEFAULT, ids=lambda setup: setup.id)
def copied_default(request: pytest.FixtureRequest, certificate: Certificate) -> Iterator[Running]:
    yield from _start(request.param, certificate)


@pytest.fixture(scope="class", params=COPIED_LISTED, ids=lambda setup: setup.id)
def copied_listed(request: pytest.FixtureRequest, certificate: Certificate) -> Iterator[Running]:
    yield from _start(request.param, certificate)


TLS = pytest.mark.parametrize("tls", [False, True], ids=["http", "tls"])
PREFIXES = pytest.mark.parametrize("prefix", ["", PREFIX], ids=["root", "prefix"])

# Values a client (or a broken proxy chain) may send; none may make the service fail.
MALFORMED: list[dict[str, str | bytes]] = [
    {"X-Forwarded-For": "not-an-address"},
    {"X-Forwarded-For": "[::1"},
    {"X-Forwarded-For": "1.2.3.4:99999, , ,"},
    {"X-Forwarded-For": "::ffff:1.2.3.4, 300.1.1.1"},
    {"X-Forwarded-For": ",".join(["10.0.0.1"] * 600)},
    {"X-Forwarded-Host": "a b"},
    {"X-Forwarded-Host": "[::1]:abc"},
    {"X-Forwarded-Host": "host:99999"},
    {"X-Forwarded-Host": "x" * 3000},
    {"X-Forwarded-Port": "-1"},
    {"X-Forwarded-Port": "99999"},
    {"X-Forwarded-Proto": "javascript"},
    {"X-Forwarded-Prefix": "/../../etc"},
    {"X-Forwarded-Prefix": "//evil.example"},
    {"X-Forwarded-Prefix": "/a%00b"},
    {"Forwarded": 'for="[::1'},
    {"Forwarded": "for=;;;host=,proto"},
    {"Forwarded": 'host="a\\"b";proto=ftp'},
    {"Forwarded": "for=unknown;by=_hidden, for=_obfuscated"},
    {"X-Forwarded-Host": b"\xff\xfe\xfd", "X-Forwarded-For": b"\xc3\xa9"},
    # The Host header, which the recommended configurations forward as X-Forwarded-Host.
    {"Host": "[::1]:abc"},
    {"Host": "public.example:99999"},
    {"Host": "public.example:0"},
    {"Host": "x" * 300},
    {"Host": "a_b.example"},
    {"Host": b"\xc3\xa9.example"},
]


def _check_malformed(running: Running) -> None:
    for tls in (False, True):
        for prefix in ("", PREFIX):
            for headers in MALFORMED:
                for path in ("/where", "/c2c", "/c2c/headers"):
                    host = headers.get("Host", f"{PUBLIC_HOST}:{running.proxy.public_port(tls)}")
                    sent = [
                        (b"Host", host if isinstance(host, bytes) else host.encode()),
                        (b"X-API-Key", SECRET.encode()),
                        *(
                            (name.encode(), value if isinstance(value, bytes) else value.encode())
                            for name, value in headers.items()
                            if name != "Host"
                        ),
                    ]
                    response = running.client.get(running.proxy.url(tls) + prefix + path, headers=sent)
                    assert response.status_code < 500, (tls, prefix, path, headers, running.service.output())


class TestRecommended:
    """examples/proxies/* with the settings docs/proxies.md gives, either family: the public URL, nothing forged."""

    @TLS
    @PREFIXES
    def test_what_the_service_sees(self, recommended: Running, tls: bool, prefix: str) -> None:
        base = recommended.expected_base(tls, prefix)
        where = recommended.get(tls, f"{prefix}/where")
        assert where.status_code == 200, where.text
        assert where.json() == {
            "url_for": f"{base}/where",
            "url": f"{base}/where",
            "scheme": "https" if tls else "http",
            "root_path": prefix,
            "client": CLIENT,
            "host_header": f"{PUBLIC_HOST}:{recommended.proxy.public_port(tls)}",
        }
        seen = recommended.get(tls, f"{prefix}/c2c/headers", {"X-API-Key": SECRET}).json()
        assert seen["url"]["url"] == f"{base}/c2c/headers"
        assert seen["base_url"]["url"] == f"{base}/"
        assert seen["client"].split(":")[0] == CLIENT
        assert seen["scope"]["server"] == [PUBLIC_HOST, recommended.proxy.public_port(tls)]
        assert seen["scope"]["root_path"] == f"{prefix}/c2c"

    @TLS
    @PREFIXES
    def test_trailing_slash_redirect(self, recommended: Running, tls: bool, prefix: str) -> None:
        response = recommended.get(tls, f"{prefix}/c2c")
        assert response.is_redirect
        assert response.headers["location"] == f"{recommended.expected_base(tls, prefix)}/c2c/"

    @TLS
    @PREFIXES
    def test_openapi_url(self, recommended: Running, tls: bool, prefix: str) -> None:
        page = recommended.get(tls, f"{prefix}/c2c/docs")
        assert page.status_code == 200
        assert re.findall(r"url: '([^']*openapi[^']*)'", page.text) == [f"{prefix}/c2c/openapi.json"]
        schema = recommended.get(tls, f"{prefix}/c2c/openapi.json")
        assert schema.status_code == 200
        assert schema.json()["servers"] == [{"url": f"{prefix}/c2c"}]

    @TLS
    @PREFIXES
    def test_login_cookie_and_came_from(self, recommended: Running, tls: bool, prefix: str) -> None:
        base = recommended.expected_base(tls, prefix)
        login = f"{prefix}/c2c/auth/login"
        response = recommended.get(tls, f"{login}?came_from={base}/where", {"X-API-Key": SECRET})
        assert response.status_code == 303, response.text
        assert response.headers["location"] == f"{base}/where"
        cookie = response.headers["set-cookie"]
        assert f"Path={prefix}/c2c/;" in cookie
        for elsewhere in ("https://evil.example/phish", f"{base.replace(PUBLIC_HOST, 'evil.example')}/where"):
            refused = recommended.get(tls, f"{login}?came_from={elsewhere}", {"X-API-Key": SECRET})
            assert refused.status_code == 400, elsewhere
            assert "set-cookie" not in refused.headers
        if tls:  # leaving HTTPS for the same host over plain HTTP is refused too
            downgrade = base.replace("https://", "http://")
            refused = recommended.get(tls, f"{login}?came_from={downgrade}/where", {"X-API-Key": SECRET})
            assert refused.status_code == 400

    def test_client_values_do_not_leak(self, recommended: Running) -> None:
        for tls in (False, True):
            for prefix in ("", PREFIX):
                text = (
                    recommended.get(tls, f"{prefix}/where").text
                    + recommended.get(tls, f"{prefix}/c2c").headers["location"]
                )
                for forged in ("evil", FORGED_CLIENT, FORGED_PORT):
                    assert forged not in text, (tls, prefix, text)

    def test_without_forged_headers(self, recommended: Running) -> None:
        """The same answers when the client sends no forwarded header at all."""
        for tls in (False, True):
            where = recommended.get(tls, f"{PREFIX}/where", forged=False).json()
            assert where["url_for"] == f"{recommended.expected_base(tls, PREFIX)}/where"
            assert where["client"] == CLIENT

    def test_malformed_values_never_fail(self, recommended: Running) -> None:
        _check_malformed(recommended)


class TestCopiedWithDefaultFields:
    """The copied configurations, default FIELDS, trusted_hosts="*": no forged prefix or client address."""

    @TLS
    @PREFIXES
    def test_no_forged_prefix_or_client(self, copied_default: Running, tls: bool, prefix: str) -> None:
        where = copied_default.get(tls, f"{prefix}/where").json()
        assert where["client"] == CLIENT
        assert where["root_path"] == ""
        assert urllib.parse.urlsplit(where["url_for"]).path == "/where"
        location = copied_default.get(tls, f"{prefix}/c2c").headers["location"]
        assert urllib.parse.urlsplit(location).path == "/c2c/"
        login = copied_default.get(tls, f"{prefix}/c2c/auth/login", {"X-API-Key": SECRET})
        assert login.status_code == 200
        assert "Path=/c2c/;" in login.headers["set-cookie"]
        docs = copied_default.get(tls, f"{prefix}/c2c/docs").text
        assert re.findall(r"url: '([^']*openapi[^']*)'", docs) == ["/c2c/openapi.json"]

    def test_malformed_values_never_fail(self, copied_default: Running) -> None:
        _check_malformed(copied_default)


class TestCopiedWithListedFields:
    """The copied configurations with the FIELDS docs/proxies.md gives for them: nothing forged gets through."""

    @TLS
    @PREFIXES
    def test_nothing_forged(self, copied_listed: Running, tls: bool, prefix: str) -> None:
        base = copied_listed.expected_base(tls, prefix)
        where = copied_listed.get(tls, f"{prefix}/where").json()
        assert where["client"] == CLIENT
        assert where["url_for"] == f"{base}/where"
        assert where["scheme"] == copied_listed.scheme(tls)
        assert where["root_path"] == ""
        assert copied_listed.get(tls, f"{prefix}/c2c").headers["location"] == f"{base}/c2c/"
        refused = copied_listed.get(tls, "/c2c/auth/login?came_from=https://evil.example/phish", {"X-API-Key": SECRET})
        assert refused.status_code == 400

    def test_malformed_values_never_fail(self, copied_listed: Running) -> None:
        _check_malformed(copied_listed)


# The fields each copied configuration leaves to the client (the table of docs/proxies.md), by scheme.
CLIENTS_FIELDS = {
    "nginx": {"http": {"host", "port", "prefix"}, "https": {"host", "port", "prefix"}},
    # Apache's appended X-Forwarded-Host carries the port: the client's X-Forwarded-Port loses to it.
    "apache": {"http": {"proto", "prefix"}, "https": {"proto", "prefix"}},
    # The copied HAProxy configuration sets X-Forwarded-Proto on TLS only.
    "haproxy": {"http": {"host", "port", "prefix", "proto"}, "https": {"host", "port", "prefix"}},
}
COPIED_ALL = [
    Setup(name, "copied", "for,proto,host,port,prefix", sets_prefix=False) for name in ("nginx", "apache", "haproxy")
]


@pytest.fixture(scope="class", params=COPIED_ALL, ids=lambda setup: setup.id)
def copied_all(request: pytest.FixtureRequest, certificate: Certificate) -> Iterator[Running]:
    yield from _start(request.param, certificate)


class TestCopiedWithEveryField:
    """Why the copied configurations need a shorter FIELDS: each field they do not set is the client's."""

    @TLS
    def test_the_fields_left_to_the_client(self, copied_all: Running, tls: bool) -> None:
        forged = copied_all.forged(tls)
        where = copied_all.get(tls, f"{PREFIX}/where").json()
        url = urllib.parse.urlsplit(where["url_for"])
        taken = {
            "for": where["client"] == FORGED_CLIENT,
            "proto": url.scheme == forged["X-Forwarded-Proto"],
            "host": url.hostname == "evil.example",
            "port": url.port == int(FORGED_PORT),
            "prefix": url.path.startswith("/evil/"),
        }
        expected = CLIENTS_FIELDS[copied_all.setup.proxy]["https" if tls else "http"]
        assert {name for name, forged_value in taken.items() if forged_value} == expected

    def test_malformed_values_never_fail(self, copied_all: Running) -> None:
        """Every forwarded header reaches the middleware here, malformed or not."""
        _check_malformed(copied_all)


# Two proxies that each append to X-Forwarded-For: the edge one adds the client, the inner one the edge proxy.
CHAINS = [
    Setup("haproxy", "copied", "for", hops=2, behind="nginx", sets_prefix=False),
    Setup("nginx", "copied", "for", hops=2, behind="apache", sets_prefix=False),
]


@pytest.fixture(scope="class", params=CHAINS, ids=lambda setup: setup.id)
def chain(request: pytest.FixtureRequest, certificate: Certificate) -> Iterator[Running]:
    yield from _start(request.param, certificate)


class TestTwoProxies:
    """HOPS=2 behind two appending proxies: the client is read two places from the right, never further."""

    @TLS
    def test_client_address(self, chain: Running, tls: bool) -> None:
        assert chain.get(tls, "/where").json()["client"] == CLIENT
        assert chain.get(tls, "/where", forged=False).json()["client"] == CLIENT
        several = {"X-Forwarded-For": f"{FORGED_CLIENT}, 127.0.0.1, 127.0.0.1"}  # forged trusted hops too
        assert chain.get(tls, "/where", several).json()["client"] == CLIENT

    def test_malformed_values_never_fail(self, chain: Running) -> None:
        _check_malformed(chain)


def test_examples_are_the_documented_ones() -> None:
    """docs/proxies.md shows the tested files as they are."""
    docs = (Path(__file__).parent.parent / "docs" / "proxies.md").read_text(encoding="utf-8")
    examples = Path(__file__).parent.parent / "examples" / "proxies"
    for name in ("nginx.conf", "apache.conf", "haproxy.cfg", "nginx-forwarded.conf"):
        assert (examples / name).read_text(encoding="utf-8").strip() in docs, name
