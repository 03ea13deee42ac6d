"""ForwardedHeadersMiddleware through real requests: trust, X-Forwarded-*, RFC 7239, malformed input, properties."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from a2wsgi import WSGIMiddleware
from fastapi import FastAPI, Request, WebSocket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from c2casgiutils.headers import ArmorHeaderMiddleware, ForwardedHeadersMiddleware

PROXY = ("10.0.0.5", 40000)
ALL_FIELDS = "for,proto,host,port,prefix"


def make_app(**forwarded: Any) -> FastAPI:
    app = FastAPI()
    sub = FastAPI()

    @app.get("/where", name="where")
    async def where(request: Request) -> dict[str, Any]:
        return {
            "url": str(request.url),
            "url_for": str(request.url_for("where")),
            "base_url": str(request.base_url),
            "scheme": request.url.scheme,
            "server": list(request.scope["server"]) if request.scope.get("server") else None,
            "host": request.headers.get("host"),
            "client": list(request.client) if request.client else None,
            "root_path": request.scope.get("root_path", ""),
        }

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json({"url": str(websocket.url), "client": list(websocket.client or ())})
        await websocket.close()

    @sub.get("/inner", name="inner")
    async def inner(request: Request) -> dict[str, str]:
        return {"url_for": str(request.url_for("inner")), "url": str(request.url)}

    app.mount("/sub", sub)
    app.add_middleware(ForwardedHeadersMiddleware, **forwarded)
    return app


async def get(
    app: Any, headers: dict[str, str] | list[tuple[str, str]], peer: tuple[str, int] = PROXY, path: str = "/where"
) -> dict[str, Any]:
    transport = httpx.ASGITransport(app=app, client=peer)
    async with httpx.AsyncClient(transport=transport, base_url="http://internal:8080", timeout=10) as client:
        items = headers.items() if isinstance(headers, dict) else headers
        response = await client.get(path, headers=[(name, value.encode("latin-1")) for name, value in items])
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


UNCHANGED = {
    "url": "http://internal:8080/where",
    "scheme": "http",
    "host": "internal:8080",
    "client": list(PROXY),
    "root_path": "",
}


def assert_unchanged(seen: dict[str, Any], peer: tuple[str, int] = PROXY) -> None:
    assert {key: seen[key] for key in UNCHANGED} == {**UNCHANGED, "client": list(peer)}


SPOOF = {
    "x-forwarded-for": "6.6.6.6",
    "x-forwarded-proto": "https",
    "x-forwarded-host": "evil.example",
    "x-forwarded-port": "444",
    "x-forwarded-prefix": "/evil",
    "forwarded": "for=6.6.6.6;proto=https;host=evil.example",
}


@pytest.mark.parametrize("headers_type", ["x-forwarded", "forwarded"])
async def test_untrusted_peer_is_not_believed(headers_type: Any) -> None:
    app = make_app(trusted_hosts="127.0.0.1", headers_type=headers_type)
    assert_unchanged(await get(app, SPOOF))


async def test_x_forwarded_headers_from_a_trusted_proxy() -> None:
    app = make_app(trusted_hosts=["10.0.0.0/8"], fields=ALL_FIELDS)
    seen = await get(
        app,
        {
            "x-forwarded-for": "203.0.113.7",
            "x-forwarded-proto": "https",
            "x-forwarded-host": "www.example.com",
            "x-forwarded-port": "8443",
            "x-forwarded-prefix": "/app/",
        },
    )
    assert seen["url"] == "https://www.example.com:8443/app/where"
    assert seen["url_for"] == "https://www.example.com:8443/app/where"
    assert seen["base_url"] == "https://www.example.com:8443/app/"
    assert seen["server"] == ["www.example.com", 8443]
    assert seen["host"] == "www.example.com:8443"
    assert seen["client"] == ["203.0.113.7", 0]
    assert seen["root_path"] == "/app"


async def test_default_port_of_the_forwarded_scheme_and_host_port_wins() -> None:
    app = make_app(trusted_hosts="10.0.0.5")
    seen = await get(app, {"x-forwarded-proto": "HTTPS", "x-forwarded-host": "example.com"})
    assert seen["url_for"] == "https://example.com/where"
    assert seen["server"] == ["example.com", 443]
    seen = await get(app, {"x-forwarded-host": "example.com:9000", "x-forwarded-port": "1"})
    assert seen["url_for"] == "http://example.com:9000/where"
    # A port alone keeps the host the proxy passed on.
    seen = await get(app, {"x-forwarded-port": "8081"})
    assert seen["url_for"] == "http://internal:8081/where"


async def test_url_for_in_a_mounted_sub_app_with_a_forwarded_prefix() -> None:
    app = make_app(trusted_hosts="10.0.0.5", fields=ALL_FIELDS)
    seen = await get(
        app,
        {"x-forwarded-proto": "https", "x-forwarded-host": "example.com", "x-forwarded-prefix": "/p"},
        path="/sub/inner",
    )
    assert seen == {"url_for": "https://example.com/p/sub/inner", "url": "https://example.com/p/sub/inner"}


@pytest.mark.parametrize(
    ("forwarded_for", "hops", "client"),
    [
        # The right-most address that is not a trusted proxy is the client; what it wrote itself is ignored.
        ("6.6.6.6, 203.0.113.7", 1, ["203.0.113.7", 0]),
        ("6.6.6.6, 203.0.113.7", 3, ["203.0.113.7", 0]),
        # Never more than ``hops`` places from the right: one proxy appends one address.
        ("6.6.6.6, 203.0.113.7, 10.1.1.1", 1, ["10.1.1.1", 0]),
        ("6.6.6.6, 203.0.113.7, 10.1.1.1", 2, ["203.0.113.7", 0]),
        ("203.0.113.7:5555", 1, ["203.0.113.7", 5555]),
        ("[2001:db8::1]:4711", 1, ["2001:db8::1", 4711]),
        ("2001:db8::1", 1, ["2001:db8::1", 0]),
        ("10.1.1.1, 10.2.2.2", 1, ["10.2.2.2", 0]),  # all trusted: ``hops`` places from the right
        ("10.1.1.1, 10.2.2.2", 2, ["10.1.1.1", 0]),
        ("10.1.1.1, 10.2.2.2", 3, list(PROXY)),  # fewer than ``hops``, all trusted: maybe the client's, ignored
        ("::ffff:203.0.113.9", 1, ["203.0.113.9", 0]),  # IPv4-mapped: the IPv4 client
        ("[::ffff:203.0.113.9]:80", 1, ["203.0.113.9", 80]),
    ],
)
async def test_x_forwarded_for_rightmost_untrusted(forwarded_for: str, hops: int, client: list[Any]) -> None:
    app = make_app(trusted_hosts="10.0.0.0/8", hops=hops)
    assert (await get(app, {"x-forwarded-for": forwarded_for}))["client"] == client


async def test_multi_valued_headers_follow_the_client_hop() -> None:
    # Apache appends: the client's own X-Forwarded-Host comes first, the proxy's value last.
    app = make_app(trusted_hosts="10.0.0.0/8")
    seen = await get(app, {"x-forwarded-for": "6.6.6.6, 203.0.113.7", "x-forwarded-host": "evil.example, good.example"})
    assert seen["host"] == "good.example"
    # Two trusted proxies appending (hops=2): the outer one's value (what the client asked for).
    headers = {
        "x-forwarded-for": "6.6.6.6, 203.0.113.7, 10.9.9.9",
        "x-forwarded-host": "evil.example, public.example, internal.example",
    }
    seen = await get(make_app(trusted_hosts="10.0.0.0/8", hops=2), headers)
    assert seen["host"] == "public.example"
    assert seen["client"] == ["203.0.113.7", 0]
    # With hops=1 the inner proxy's own value, never the client's.
    seen = await get(app, headers)
    assert (seen["host"], seen["client"]) == ("internal.example", ["10.9.9.9", 0])
    # Repeated header lines are one list.
    seen = await get(app, [("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "203.0.113.8")])
    assert seen["client"] == ["203.0.113.8", 0]


THREE_ELEMENTS = "for=6.6.6.6;host=evil.example, for=203.0.113.7;proto=https;host=good.example, for=10.3.3.3;host=inner"


@pytest.mark.parametrize(
    ("forwarded", "hops", "expected"),
    [
        (
            'for=203.0.113.7;proto=https;host="example.com:8443"',
            1,
            ("https://example.com:8443/where", "203.0.113.7", 0),
        ),
        (
            'For="[2001:db8:cafe::17]:4711";Proto=https;Host=example.com',
            1,
            ("https://example.com/where", "2001:db8:cafe::17", 4711),
        ),
        # Several elements, one per proxy: the hop whose client is not a trusted proxy, within ``hops``.
        (THREE_ELEMENTS, 2, ("https://good.example/where", "203.0.113.7", 0)),
        (THREE_ELEMENTS, 3, ("https://good.example/where", "203.0.113.7", 0)),
        (THREE_ELEMENTS, 1, ("http://inner/where", "10.3.3.3", 0)),
        ('for="203.0.113.7:80";by=10.0.0.5;host="a.example"', 1, ("http://a.example/where", "203.0.113.7", 80)),
        ('for="[::ffff:203.0.113.9]"', 1, ("http://internal:8080/where", "203.0.113.9", 0)),
        # Obfuscated or unknown client: keep the peer address, still use the hop's host.
        ("for=unknown;host=b.example", 1, ("http://b.example/where", PROXY[0], PROXY[1])),
        ('for="_hidden";proto=https', 1, ("https://internal:8080/where", PROXY[0], PROXY[1])),
    ],
)
async def test_rfc7239_forwarded(forwarded: str, hops: int, expected: tuple[str, str, int]) -> None:
    app = make_app(trusted_hosts="10.0.0.0/8", headers_type="forwarded", hops=hops, fields=ALL_FIELDS)
    seen = await get(app, {"forwarded": forwarded, "x-forwarded-host": "ignored.example"})
    assert (seen["url_for"], *seen["client"]) == expected


@pytest.mark.parametrize("trusted_hosts", ["10.0.0.5", "*"])
async def test_one_family_only(trusted_hosts: str) -> None:
    # The proxy sets one family; the other reaches the app as the client wrote it, so it never counts.
    x_forwarded = {
        "x-forwarded-for": "6.6.6.6",
        "x-forwarded-proto": "https",
        "x-forwarded-host": "evil.example",
        "x-forwarded-port": "444",
        "x-forwarded-prefix": "/evil",
    }
    app = make_app(trusted_hosts=trusted_hosts, headers_type="forwarded", fields="for,proto,host,port")
    assert_unchanged(await get(app, x_forwarded))
    seen = await get(app, {**x_forwarded, "forwarded": "for=203.0.113.7;host=good.example"})
    assert (seen["url_for"], seen["client"], seen["root_path"]) == ("http://good.example/where", ["203.0.113.7", 0], "")
    app = make_app(trusted_hosts=trusted_hosts, headers_type="x-forwarded", fields=ALL_FIELDS)
    assert_unchanged(await get(app, {"forwarded": "for=6.6.6.6;proto=https;host=evil.example"}))


@pytest.mark.parametrize("trusted_hosts", ["10.0.0.5", "*"])
async def test_forwarded_mode_reads_x_forwarded_prefix_when_prefix_is_listed(trusted_hosts: str) -> None:
    """The exception to the one-family rule: Forwarded has no prefix, X-Forwarded-Prefix gives it, if listed."""
    app = make_app(trusted_hosts=trusted_hosts, headers_type="forwarded", fields="for,proto,host,prefix")
    forwarded = {"forwarded": "for=203.0.113.7;proto=https;host=good.example", "x-forwarded-prefix": "/svc/"}
    other = {"x-forwarded-host": "evil.example", "x-forwarded-proto": "http", "x-forwarded-for": "6.6.6.6"}
    seen = await get(app, {**forwarded, **other})
    assert (seen["url_for"], seen["client"], seen["root_path"]) == (
        "https://good.example/svc/where", ["203.0.113.7", 0], "/svc",
    )
    # Alone (the proxy sets only the prefix, or only prefix is listed): the prefix, nothing else.
    seen = await get(app, {"x-forwarded-prefix": "/svc", **other})
    assert (seen["url_for"], seen["client"]) == ("http://internal:8080/svc/where", list(PROXY))
    seen = await get(make_app(trusted_hosts=trusted_hosts, headers_type="forwarded", fields="prefix"), forwarded)
    assert (seen["url_for"], seen["client"]) == ("http://internal:8080/svc/where", list(PROXY))
    # Not listed: not read, as in x-forwarded mode.
    app = make_app(trusted_hosts=trusted_hosts, headers_type="forwarded", fields="for,proto,host")
    seen = await get(app, forwarded)
    assert (seen["url_for"], seen["root_path"]) == ("https://good.example/where", "")


async def test_forwarded_mode_prefix_follows_the_trust_rules() -> None:
    fields = "for,proto,host,prefix"
    # An untrusted peer: nothing, the prefix neither.
    app = make_app(trusted_hosts="127.0.0.1", headers_type="forwarded", fields=fields)
    assert_unchanged(await get(app, {"forwarded": "for=203.0.113.7", "x-forwarded-prefix": "/svc"}))
    # Malformed prefixes are ignored; the rest of the hop still applies.
    app = make_app(trusted_hosts="10.0.0.0/8", headers_type="forwarded", fields=fields)
    for malformed in ("/../etc", "//evil.example", "svc", "/a?b", "/" + "a" * 5000):
        seen = await get(app, {"forwarded": "for=203.0.113.7;host=good.example", "x-forwarded-prefix": malformed})
        assert (seen["url_for"], seen["root_path"]) == ("http://good.example/where", ""), malformed
    # Hops: the prefix is read from the client's hop, as many places from the right as its Forwarded element.
    app = make_app(trusted_hosts="10.0.0.0/8", headers_type="forwarded", fields=fields, hops=2)
    two_proxies = {"forwarded": "for=6.6.6.6, for=203.0.113.7, for=10.1.1.1", "x-forwarded-prefix": "/evil, /a, /b"}
    seen = await get(app, two_proxies)
    assert (seen["client"], seen["root_path"]) == (["203.0.113.7", 0], "/a")
    # A prefix list shorter than the client's depth was not written by that many proxies: ignored.
    seen = await get(app, {**two_proxies, "x-forwarded-prefix": "/evil"})
    assert (seen["client"], seen["root_path"]) == (["203.0.113.7", 0], "")


async def test_only_the_listed_fields_are_applied() -> None:
    headers = {
        "x-forwarded-for": "203.0.113.7",
        "x-forwarded-proto": "https",
        "x-forwarded-host": "good.example",
        "x-forwarded-port": "8443",
        "x-forwarded-prefix": "/pre",
    }
    # The default fields leave X-Forwarded-Prefix out: a proxy that does not set it passes the client's on.
    seen = await get(make_app(trusted_hosts="10.0.0.5"), headers)
    assert (seen["url_for"], seen["root_path"]) == ("https://good.example:8443/where", "")
    seen = await get(make_app(trusted_hosts="10.0.0.5", fields=["for", "proto"]), headers)
    assert (seen["url_for"], seen["client"]) == ("https://internal:8080/where", ["203.0.113.7", 0])
    seen = await get(make_app(trusted_hosts="10.0.0.5", fields="host, prefix"), headers)
    assert (seen["url_for"], seen["client"]) == ("http://good.example/pre/where", list(PROXY))
    seen = await get(make_app(trusted_hosts="10.0.0.5", fields="port"), headers)
    assert seen["url_for"] == "http://internal:8443/where"
    assert_unchanged(await get(make_app(trusted_hosts="10.0.0.5", fields=[]), headers))
    forwarded = {"forwarded": "for=203.0.113.7;proto=https;host=good.example"}
    seen = await get(make_app(trusted_hosts="10.0.0.5", headers_type="forwarded", fields="proto"), forwarded)
    assert (seen["url_for"], seen["client"]) == ("https://internal:8080/where", list(PROXY))


async def test_trust_all_reads_hops_places_from_the_right() -> None:
    # trusted_hosts="*": every address is "trusted", so only ``hops`` keeps the client's left-most value out.
    headers = {
        "x-forwarded-for": "1.2.3.4, 203.0.113.7",
        "x-forwarded-host": "evil.example, good.example",
        "x-forwarded-proto": "https, http",
    }
    seen = await get(make_app(trusted_hosts="*"), headers)
    assert (seen["client"], seen["host"], seen["scheme"]) == (["203.0.113.7", 0], "good.example", "http")
    seen = await get(make_app(trusted_hosts="*", hops=2), headers)
    assert (seen["client"], seen["host"], seen["scheme"]) == (["1.2.3.4", 0], "evil.example", "https")
    forwarded = {"forwarded": "for=1.2.3.4;host=evil.example, for=203.0.113.7;host=good.example"}
    seen = await get(make_app(trusted_hosts="*", headers_type="forwarded"), forwarded)
    assert (seen["client"], seen["host"]) == (["203.0.113.7", 0], "good.example")


async def test_a_list_shorter_than_hops_is_ignored() -> None:
    # Two proxies append: a single value was written by neither of them (or by the client).
    app = make_app(trusted_hosts="10.0.0.0/8", hops=2)
    seen = await get(app, {"x-forwarded-for": "203.0.113.7, 10.1.1.1", "x-forwarded-host": "evil.example"})
    assert (seen["client"], seen["host"]) == (["203.0.113.7", 0], "internal:8080")


async def test_ipv4_mapped_peer_is_shown_as_ipv4() -> None:
    app = make_app(trusted_hosts="10.0.0.5")
    # Trusted (checked as IPv4) and rewritten.
    seen = await get(app, {"x-forwarded-host": "good.example"}, peer=("::ffff:10.0.0.5", 7))
    assert (seen["host"], seen["client"]) == ("good.example", ["10.0.0.5", 7])
    # Untrusted, not rewritten, still given in IPv4 form.
    seen = await get(app, {"x-forwarded-host": "evil.example"}, peer=("::ffff:192.0.2.1", 7))
    assert (seen["host"], seen["client"]) == ("internal:8080", ["192.0.2.1", 7])


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        ({"fields": "for,scheme"}, "fields: unknown field"),
        ({"fields": ["prefix", "x-forwarded-host"]}, "fields: unknown field"),
        ({"hops": 0}, "hops: expected an integer"),
        ({"hops": 33}, "hops: expected an integer"),
        ({"hops": "2"}, "hops: expected an integer"),
    ],
)
def test_fields_and_hops_errors(keywords: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ForwardedHeadersMiddleware(FastAPI(), **keywords)


def test_fields_and_hops_default_to_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from c2casgiutils import config

    monkeypatch.setenv("C2C__PROXY_HEADERS__FIELDS", "for,prefix")
    monkeypatch.setenv("C2C__PROXY_HEADERS__HOPS", "3")
    monkeypatch.setattr(config, "settings", config.load_settings())
    middleware = ForwardedHeadersMiddleware(FastAPI(), trusted_hosts="10.0.0.5", headers_type="x-forwarded")
    assert (middleware.fields, middleware.hops) == (frozenset({"for", "prefix"}), 3)
    # Keywords win over the settings.
    middleware = ForwardedHeadersMiddleware(FastAPI(), fields="proto", hops=1)
    assert (middleware.fields, middleware.hops) == (frozenset({"proto"}), 1)
    for variable, value, shown in (
        ("C2C__PROXY_HEADERS__FIELDS", "for,scheme", "C2C__PROXY_HEADERS__FIELDS (got 'scheme')"),
        ("C2C__PROXY_HEADERS__HOPS", "0", "C2C__PROXY_HEADERS__HOPS (got '0')"),
        ("C2C__PROXY_HEADERS__HOPS", "two", "C2C__PROXY_HEADERS__HOPS (got 'two')"),
    ):
        monkeypatch.setenv("C2C__PROXY_HEADERS__FIELDS", "for")
        monkeypatch.setenv("C2C__PROXY_HEADERS__HOPS", "1")
        monkeypatch.setenv(variable, value)
        with pytest.raises(config.SettingsError) as error:
            config.load_settings()
        assert shown in str(error.value)


@pytest.mark.parametrize(
    "trusted_hosts",
    ["10.0.0.5", "127.0.0.1, 10.0.0.5", ["10.0.0.0/24"], "*", ["::1", "10.0.0.0/255.255.255.0"]],
)
async def test_trusted_hosts_forms(trusted_hosts: Any) -> None:
    app = make_app(trusted_hosts=trusted_hosts)
    assert (await get(app, {"x-forwarded-host": "example.com"}))["host"] == "example.com"
    assert (await get(app, {"x-forwarded-host": "example.com"}, peer=("10.0.1.5", 1)))["host"] == (
        "example.com" if trusted_hosts == "*" else "internal:8080"
    )


async def test_ipv6_peer_and_network() -> None:
    app = make_app(trusted_hosts="fd00::/8")
    seen = await get(app, {"x-forwarded-host": "example.com"}, peer=("fd00::1", 1))
    assert seen["host"] == "example.com"
    seen = await get(app, {"x-forwarded-host": "example.com"}, peer=("fe80::1", 1))
    assert seen["host"] == "internal:8080"


@pytest.mark.parametrize(
    "headers",
    [
        {"forwarded": "for=203.0.113.7;host=example.com;host=twice.example"},
        {"forwarded": 'for="unterminated;host=example.com'},
        {"forwarded": "garbage"},
        {"forwarded": "host=exa mple.com"},
        {"x-forwarded-host": "evil.example/path"},
        {"x-forwarded-host": "user@evil.example"},
        {"x-forwarded-host": "evil example"},
        {"x-forwarded-host": "evil\x7f.example"},
        {"x-forwarded-host": "example.com:99999"},
        {"x-forwarded-host": "example.com:-1"},
        {"x-forwarded-host": "[not-ipv6]:80"},
        {"x-forwarded-host": "a" * 5000},
        {"x-forwarded-port": "0"},
        {"x-forwarded-port": "65536"},
        {"x-forwarded-port": "\xb2"},  # latin-1 superscript two: isdigit() but not a port
        {"x-forwarded-proto": "gopher"},
        {"x-forwarded-prefix": "no-slash"},
        {"x-forwarded-prefix": "//evil.example"},
        {"x-forwarded-prefix": "/a/../b"},
        {"x-forwarded-prefix": "/a?b"},
        {"x-forwarded-for": "not an ip"},
        {"x-forwarded-for": "1.2.3.4:99999"},
        # An over-long X-Forwarded-For is cut on the client's side, not ignored: test_security_review.py.
    ],
)
@pytest.mark.parametrize("headers_type", ["x-forwarded", "forwarded"])
async def test_malformed_values_are_ignored(headers: dict[str, str], headers_type: Any) -> None:
    app = make_app(trusted_hosts="10.0.0.5", headers_type=headers_type)
    assert_unchanged(await get(app, headers))


def test_construction_errors() -> None:
    with pytest.raises(ValueError, match="'proxy.example' is not an IP address"):
        ForwardedHeadersMiddleware(FastAPI(), trusted_hosts="10.0.0.1, proxy.example")
    with pytest.raises(ValueError, match="headers_type"):
        ForwardedHeadersMiddleware(FastAPI(), headers_type="x-real-ip")  # type: ignore[arg-type]


async def test_none_passes_through() -> None:
    app = make_app(trusted_hosts="*", headers_type="none")
    assert_unchanged(await get(app, SPOOF))


def test_websocket_scheme_and_client() -> None:
    app = make_app(trusted_hosts="10.0.0.5")
    headers = {"x-forwarded-proto": "https", "x-forwarded-host": "example.com", "x-forwarded-for": "203.0.113.7"}
    with TestClient(app, client=PROXY).websocket_connect("/ws", headers=headers) as websocket:
        seen = websocket.receive_json()
    assert seen == {"url": "wss://example.com/ws", "client": ["203.0.113.7", 0]}


def test_wsgi_app_sees_the_forwarded_values() -> None:
    def wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        keys = ("wsgi.url_scheme", "HTTP_HOST", "SCRIPT_NAME", "PATH_INFO", "REMOTE_ADDR")
        return [" ".join(str(environ.get(key)) for key in keys).encode()]

    app = ForwardedHeadersMiddleware(
        ArmorHeaderMiddleware(WSGIMiddleware(wsgi)),  # type: ignore[arg-type]
        trusted_hosts="10.0.0.5",
        fields=ALL_FIELDS,
    )
    response = TestClient(app, client=PROXY).get(
        "/x",
        headers={
            "x-forwarded-proto": "https",
            "x-forwarded-host": "example.com",
            "x-forwarded-prefix": "/pre",
            "x-forwarded-for": "203.0.113.7",
        },
    )
    assert response.text == "https example.com /pre /x 203.0.113.7"
    assert response.headers["x-frame-options"] == "DENY"


# --- properties -----------------------------------------------------------------------------------------------

# Header values as a proxy could pass them on: any latin-1 text without CR/LF/NUL (h11 rejects those).
header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=80)
forwarded_like = st.lists(
    st.tuples(
        st.sampled_from(["for", "by", "host", "proto", "For", "HOST", "x"]),
        st.one_of(
            header_text,
            st.sampled_from(["[::1]:80", '"[2001:db8::1]:4711"', "unknown", "_x", "1.2.3.4", "https", "a.b:1"]),
        ),
    ),
    max_size=6,
).map(lambda pairs: ";".join(f"{name}={value}" for name, value in pairs))
header_names = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
]
header_sets = st.lists(st.tuples(st.sampled_from(header_names), st.one_of(header_text, forwarded_like)), max_size=6)
PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def run_scope(
    middleware: ForwardedHeadersMiddleware, headers: list[tuple[str, str]], peer: tuple[str, int]
) -> dict[str, Any]:
    """Call the middleware directly (no HTTP client normalisation) and return the scope the app received."""
    encoded = [(name.encode(), value.encode("latin-1")) for name, value in headers]
    return call_directly(middleware, raw_scope([(b"host", b"internal:8080"), *encoded], peer))


@pytest.mark.parametrize("headers_type", ["x-forwarded", "forwarded"])
@PROPERTY_SETTINGS
@given(headers=header_sets)
def test_property_untrusted_peer_never_rewritten(headers_type: Any, headers: list[tuple[str, str]]) -> None:
    middleware = ForwardedHeadersMiddleware(FastAPI(), trusted_hosts="10.0.0.0/8", headers_type=headers_type)
    seen = run_scope(middleware, headers, ("192.0.2.1", 1))
    assert seen["client"] == ("192.0.2.1", 1)
    assert seen["scheme"] == "http"
    assert seen["server"] == ("internal", 8080)
    assert seen["root_path"] == ""
    assert seen["path"] == "/where"
    assert seen["headers"][0] == (b"host", b"internal:8080")


@pytest.mark.parametrize("headers_type", ["x-forwarded", "forwarded"])
@PROPERTY_SETTINGS
@given(headers=header_sets)
def test_property_trusted_peer_rewrites_only_to_well_formed_values(
    headers_type: Any, headers: list[tuple[str, str]]
) -> None:
    import ipaddress

    middleware = ForwardedHeadersMiddleware(FastAPI(), trusted_hosts="10.0.0.0/8", headers_type=headers_type)
    seen = run_scope(middleware, headers, PROXY)
    assert seen["scheme"] in ("http", "https")
    host, port = seen["server"]
    assert 0 < port <= 65535
    assert host
    assert all(character not in host for character in "/@ \t\\?#")
    host_headers = [value for key, value in seen["headers"] if key == b"host"]
    assert len(host_headers) == 1
    httpx.URL(f"{seen['scheme']}://{host_headers[0].decode()}/")  # a valid authority
    ipaddress.ip_address(seen["client"][0])
    assert seen["path"] == seen["root_path"] + "/where"
    assert seen["root_path"] == "" or (seen["root_path"].startswith("/") and "//" not in seen["root_path"])


# --- caches and fast paths ----------------------------------------------------------------------------------


def call_directly(middleware: ForwardedHeadersMiddleware, scope: dict[str, Any]) -> dict[str, Any]:
    """Call the middleware with ``scope`` as a server would; return the very scope object the app got."""
    import asyncio

    received: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        received.append(scope)

    middleware.app = app
    asyncio.run(middleware(scope, None, None))  # type: ignore[arg-type]
    return received[0]


def raw_scope(headers: list[tuple[bytes, Any]], peer: tuple[str, int] = PROXY, **extra: Any) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "scheme": "http",
        "path": "/where",
        "raw_path": b"/where",
        "root_path": "",
        "query_string": b"",
        "server": ("internal", 8080),
        "client": peer,
        "headers": headers,
        **extra,
    }


def test_no_copy_when_nothing_is_rewritten() -> None:
    middleware = ForwardedHeadersMiddleware(FastAPI(), trusted_hosts="10.0.0.0/8")
    untrusted = raw_scope([(b"host", b"internal:8080"), (b"x-forwarded-host", b"evil.example")], ("192.0.2.1", 1))
    assert call_directly(middleware, untrusted) is untrusted
    no_forwarded_headers = raw_scope([(b"host", b"internal:8080"), (b"user-agent", b"x")])
    assert call_directly(middleware, no_forwarded_headers) is no_forwarded_headers
    only_garbage = raw_scope([(b"host", b"internal:8080"), (b"x-forwarded-host", b"a/b")])
    assert call_directly(middleware, only_garbage) is only_garbage


def test_the_callers_scope_is_never_changed() -> None:
    middleware = ForwardedHeadersMiddleware(FastAPI(), trusted_hosts="10.0.0.0/8", fields=ALL_FIELDS)
    headers = [
        (b"accept", b"*/*"),
        (b"host", b"internal:8080"),
        (b"x-forwarded-host", b"www.example.com"),
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-prefix", b"/app"),
        (b"x-forwarded-for", b"203.0.113.7"),
    ]
    scope = raw_scope(list(headers))
    original = {**scope, "headers": list(headers)}
    for _ in range(2):  # computed, then from the cache
        seen = call_directly(middleware, scope)
        assert scope == original
        assert seen["headers"] == [(b"accept", b"*/*"), (b"host", b"www.example.com"), *headers[2:]]
        assert (seen["scheme"], seen["server"], seen["client"]) == (
            "https",
            ("www.example.com", 443),
            ("203.0.113.7", 0),
        )
        assert (seen["root_path"], seen["path"], seen["raw_path"]) == ("/app", "/app/where", b"/app/where")


def test_cached_rewrites_follow_the_header_values_the_scope_type_and_the_host() -> None:
    middleware = ForwardedHeadersMiddleware(FastAPI(), trusted_hosts="10.0.0.0/8")
    cases = []
    for forwarded_host in (b"a.example", b"b.example:8443", None):
        for proto in (b"https", b"http", None):
            for client in (b"203.0.113.7", b"6.6.6.6, 203.0.113.8"):
                for scope_type in ("http", "websocket"):
                    cases.append((forwarded_host, proto, client, scope_type))
    for _ in range(2):
        for forwarded_host, proto, client, scope_type in cases:
            headers = [(b"host", b"internal:8080"), (b"x-forwarded-for", client)]
            if forwarded_host is not None:
                headers.append((b"x-forwarded-host", forwarded_host))
            if proto is not None:
                headers.append((b"x-forwarded-proto", proto))
            server_scheme = "ws" if scope_type == "websocket" else "http"
            seen = call_directly(middleware, raw_scope(headers, type=scope_type, scheme=server_scheme))
            expected_scheme = proto.decode() if proto else "http"
            if scope_type == "websocket":
                expected_scheme = {"http": "ws", "https": "wss"}[expected_scheme]
            assert seen["scheme"] == expected_scheme
            assert seen["client"] == (client.split(b",")[-1].strip().decode(), 0)
            if forwarded_host is None:
                assert seen["server"] == ("internal", 8080)
                assert (b"host", b"internal:8080") in seen["headers"]
            else:
                host, _, port = forwarded_host.decode().partition(":")
                default = 443 if proto == b"https" else 80
                assert seen["server"] == (host, int(port) if port else default)
                assert (b"host", forwarded_host) in seen["headers"]
    # A forwarded port alone applies to the Host the proxy passed on: that Host is part of the cache key.
    for proxied_host in (b"one.internal", b"two.internal", b"one.internal"):
        seen = call_directly(middleware, raw_scope([(b"host", proxied_host), (b"x-forwarded-port", b"8081")]))
        assert seen["server"] == (proxied_host.decode(), 8081)
        assert (b"host", proxied_host + b":8081") in seen["headers"]


def test_mixed_case_names_bytearray_values_and_repeated_host_headers() -> None:
    middleware = ForwardedHeadersMiddleware(FastAPI(), trusted_hosts="10.0.0.0/8")
    headers = [
        (b"Host", bytearray(b"internal:8080")),
        (b"X-Forwarded-Host", bytearray(b"www.example.com")),
        (b"X-Forwarded-For", memoryview(b"203.0.113.7")),
        (b"host", b"second.internal"),
    ]
    for _ in range(2):
        seen = call_directly(middleware, raw_scope(list(headers)))
        assert seen["server"] == ("www.example.com", 80)
        assert seen["client"] == ("203.0.113.7", 0)
        assert [value for name, value in seen["headers"] if name.lower() == b"host"] == [b"www.example.com"]
        assert seen["headers"][0] == (b"host", b"www.example.com")


def test_caches_stay_bounded_under_many_distinct_values_and_peers() -> None:
    from c2casgiutils import _forwarded

    middleware = ForwardedHeadersMiddleware(FastAPI(), trusted_hosts="10.0.0.0/8")
    for index in range(_forwarded._MAX_CACHED_REWRITES + 100):
        forwarded_host = f"h{index}.example".encode()
        seen = call_directly(middleware, raw_scope([(b"host", b"internal"), (b"x-forwarded-host", forwarded_host)]))
        assert seen["server"] == (forwarded_host.decode(), 80)
        assert len(middleware._rewrites) <= _forwarded._MAX_CACHED_REWRITES
    for index in range(_forwarded._MAX_CACHED_PEERS + 100):
        peer = (f"192.{index // 65536 % 256}.{index // 256 % 256}.{index % 256}", 1)
        seen = call_directly(middleware, raw_scope([(b"host", b"internal"), (b"x-forwarded-host", b"evil")], peer))
        assert seen["server"] == ("internal", 8080)
        assert len(middleware.trusted_hosts.peers) <= _forwarded._MAX_CACHED_PEERS
    seen = call_directly(middleware, raw_scope([(b"host", b"internal"), (b"x-forwarded-host", b"ok.example")]))
    assert seen["server"] == ("ok.example", 80)
    # Emptied in place: the middleware's fast path still reads the live cache, not a stale copy.
    assert middleware._trusted_peers is middleware.trusted_hosts.peers
    assert middleware.trusted_hosts.peers[PROXY[0]] is True


def test_a_forwarded_host_without_any_host_header_adds_one() -> None:
    middleware = ForwardedHeadersMiddleware(FastAPI(), trusted_hosts="10.0.0.0/8")
    headers = [(b"accept", b"*/*"), (b"x-forwarded-host", b"www.example.com")]
    for _ in range(2):  # computed, then from the cache
        seen = call_directly(middleware, raw_scope(list(headers)))
        assert seen["headers"] == [(b"host", b"www.example.com"), *headers]
        assert seen["server"] == ("www.example.com", 80)


def test_names_in_any_case_are_read_and_others_of_the_same_length_are_not() -> None:
    """Lowercase names are looked up as they are; another name is lowered when its length is a wanted one's."""
    middleware = ForwardedHeadersMiddleware(FastAPI(), trusted_hosts="10.0.0.0/8", fields="for,proto,host,port")
    headers = [
        (b"HOST", b"internal:8080"),
        (b"X-Forwarded-PORT", b"8443"),  # only a port: the host is kept from the Host header, found in capitals
        (b"Accept-Encoding", b"gzip"),  # the length of X-Forwarded-For
        (b"X-FORWARDED-FOR", b"203.0.113.7"),
        (b"x-forwarded-proto", b"https"),
        (b"X-Forwarded-Hosts", b"evil.example.com"),  # the length of X-Forwarded-Proto, not a forwarded header
    ]
    seen = call_directly(middleware, raw_scope(list(headers)))
    assert seen["client"] == ("203.0.113.7", 0)
    assert seen["scheme"] == "https"
    assert seen["server"] == ("internal", 8443)
    assert seen["headers"][0] == (b"host", b"internal:8443")
    assert (b"Accept-Encoding", b"gzip") in seen["headers"]
    assert (b"X-Forwarded-Hosts", b"evil.example.com") in seen["headers"]
