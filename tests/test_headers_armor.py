"""ArmorHeaderMiddleware through real requests (Starlette TestClient): defaults, matchers, values, nonces, ASGI."""

from __future__ import annotations

import base64
import contextvars
import gzip
import hashlib
import re
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from html.parser import HTMLParser
from typing import Any

import pytest
from a2wsgi import WSGIMiddleware
from fastapi import FastAPI, Request, Response, WebSocket
from fastapi.responses import HTMLResponse, PlainTextResponse, StreamingResponse
from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from c2casgiutils import headers
from c2casgiutils.headers import CSP_NONCE, ArmorHeaderMiddleware, HeadersConfigError

SECURITY_HEADERS = (
    "content-security-policy",
    "x-frame-options",
    "strict-transport-security",
    "x-content-type-options",
    "referrer-policy",
    "permissions-policy",
    "x-dns-prefetch-control",
    "origin-agent-cluster",
    "cross-origin-embedder-policy",
    "cross-origin-opener-policy",
    "cross-origin-resource-policy",
)
PUBLIC = {"host": "example.com"}


def make_app(**armor: Any) -> FastAPI:
    app = FastAPI()

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    @app.get("/page", response_class=HTMLResponse)
    async def page(request: Request) -> str:
        return f"<script nonce='{getattr(request.state, 'nonce', '')}'></script>"

    @app.get("/nonce")
    async def nonce(request: Request) -> dict[str, str]:
        return {"nonce": getattr(request.state, "nonce", "")}

    @app.api_route("/api/item", methods=["GET", "POST", "DELETE"])
    async def item(request: Request) -> Response:
        return Response(await request.body(), media_type="application/octet-stream")

    @app.get("/status/{code}")
    async def status(code: int) -> Response:
        return PlainTextResponse("x", status_code=code, headers={"X-Powered-By": "app", "Cache-Control": "no-store"})

    app.add_middleware(ArmorHeaderMiddleware, **armor)
    return app


def client(app: Any, **kwargs: Any) -> TestClient:
    return TestClient(app, base_url="http://example.com", **kwargs)


def csp_directives(value: str) -> dict[str, list[str]]:
    result = {}
    for directive in value.split(";"):
        name, *sources = directive.split()
        result[name] = sources
    return result


# --- defaults -----------------------------------------------------------------------------------------------


def test_default_headers_on_a_json_route() -> None:
    response = client(make_app()).get("/hello", headers=PUBLIC)
    assert response.status_code == 200
    for name in SECURITY_HEADERS:
        assert name in response.headers, name
    # Not HTML: nothing to load, never framed.
    assert response.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["strict-transport-security"].startswith("max-age=31536000")
    assert response.headers["permissions-policy"].startswith("geolocation=(), microphone=()")
    assert "expect-ct" not in response.headers  # obsolete: browsers ignore it


@pytest.mark.parametrize(
    ("path", "media_type"),
    [("/status/404", "text/plain"), ("/missing", "application/json"), ("/page", "text/html"), ("/empty", None)],
)
def test_html_pages_get_the_self_policy_and_everything_else_none(path: str, media_type: str | None) -> None:
    app = make_app()

    @app.get("/empty")
    async def empty() -> Response:
        return Response(status_code=204)

    response = client(app).get(path, headers=PUBLIC)
    assert response.headers.get("content-type", "").split(";")[0] == (media_type or "")
    csp = csp_directives(response.headers["content-security-policy"])
    if media_type == "text/html":
        assert csp == {
            "default-src": ["'self'"],
            "frame-ancestors": ["'none'"],
            "base-uri": ["'self'"],
            "form-action": ["'self'"],
        }
    else:
        assert csp == {"default-src": ["'none'"], "frame-ancestors": ["'none'"]}


def test_a_rule_without_content_type_replaces_the_policy_of_every_response() -> None:
    # The documented override: an API whose JSON responses are meant to keep the 'self' policy.
    policy = {"default-src": ["'self'"], "frame-ancestors": ["'none'"]}
    app = make_app(headers_config={"api_csp": {"headers": {"Content-Security-Policy": policy}}})
    for path in ("/hello", "/page"):
        assert client(app).get(path, headers=PUBLIC).headers["content-security-policy"] == (
            "default-src 'self'; frame-ancestors 'none'"
        )


@pytest.mark.parametrize("host", ["localhost", "localhost:8080", "app.localhost", "127.0.0.1:8000", "[::1]:8000"])
@pytest.mark.parametrize("path", ["/hello", "/page"])
def test_no_hsts_for_localhost_whatever_the_content_type(host: str, path: str) -> None:
    response = client(make_app()).get(path, headers={"host": host})
    assert "strict-transport-security" not in response.headers
    assert "content-security-policy" in response.headers


def test_no_hsts_when_settings_http(settings: Any) -> None:
    app = make_app()
    assert "strict-transport-security" in client(app).get("/hello", headers=PUBLIC).headers
    settings.http = True  # read at request time
    assert "strict-transport-security" not in client(app).get("/hello", headers=PUBLIC).headers


@pytest.mark.parametrize("http_mode", [True, False])
def test_the_specification_application_example(settings: Any, http_mode: bool) -> None:
    settings.http = http_mode
    from c2casgiutils import config

    app = make_app(
        headers_config={"http": {"headers": {"Strict-Transport-Security": None} if not config.settings.http else {}}}
    )
    response = client(app).get("/hello", headers=PUBLIC)
    assert response.status_code == 200
    assert "strict-transport-security" not in response.headers
    assert response.headers["x-frame-options"] == "DENY"


def test_use_default_false_drops_the_defaults() -> None:
    app = make_app(use_default=False, headers_config={"one": {"headers": {"X-Custom": "value"}}})
    response = client(app).get("/hello", headers=PUBLIC)
    assert response.headers["x-custom"] == "value"
    for name in SECURITY_HEADERS:
        assert name not in response.headers, name


def test_an_entry_named_like_a_default_replaces_it() -> None:
    app = make_app(headers_config={"default": {"headers": {"X-Frame-Options": "SAMEORIGIN"}}})
    response = client(app).get("/hello", headers=PUBLIC)
    assert response.headers["x-frame-options"] == "SAMEORIGIN"
    assert "content-security-policy" not in response.headers


# --- matchers -----------------------------------------------------------------------------------------------


def test_path_match_netloc_match_and_methods() -> None:
    app = make_app(
        headers_config={
            "api": {"path_match": r"^/api/.*", "headers": {"X-Api": "yes"}},
            "admin": {"netloc_match": r"^admin\..*", "headers": {"X-Robots-Tag": "noindex, nofollow"}},
            "reads": {"path_match": r"^/api/.*", "methods": ["get", "HEAD"], "headers": {"X-Read": "1"}},
        }
    )
    test_client = client(app)
    api = test_client.get("/api/item", headers=PUBLIC)
    assert api.headers["x-api"] == "yes"
    assert api.headers["x-read"] == "1"
    assert "x-robots-tag" not in api.headers
    posted = test_client.post("/api/item", content=b"x", headers=PUBLIC)
    assert posted.headers["x-api"] == "yes"
    assert "x-read" not in posted.headers
    other = test_client.get("/hello", headers={"host": "admin.example.com"})
    assert other.headers["x-robots-tag"] == "noindex, nofollow"
    assert "x-api" not in other.headers


def test_status_code_int_and_inclusive_range() -> None:
    app = make_app(
        headers_config={
            "exact": {"status_code": 200, "headers": {"X-Exact": "1"}},
            "success": {"status_code": (200, 299), "headers": {"Cache-Control": ["public", "max-age=3600"]}},
            "errors": {"status_code": [400, 404], "headers": {"X-Error": "1"}},
        }
    )
    test_client = client(app)
    ok = test_client.get("/status/200", headers=PUBLIC)
    assert ok.headers["x-exact"] == "1"
    assert ok.headers["cache-control"] == "public; max-age=3600"  # replaces the app's own value
    assert "x-error" not in ok.headers
    edge = test_client.get("/status/299", headers=PUBLIC)
    assert "x-exact" not in edge.headers
    assert edge.headers["cache-control"] == "public; max-age=3600"
    not_found = test_client.get("/status/404", headers=PUBLIC)
    assert not_found.headers["x-error"] == "1"
    assert not_found.headers["cache-control"] == "no-store"  # the app's value stays
    assert "x-error" not in test_client.get("/status/405", headers=PUBLIC).headers


def test_content_type_match_is_case_insensitive() -> None:
    app = make_app(headers_config={"html": {"content_type_match": r"^TEXT/HTML", "headers": {"X-Html": "1"}}})
    test_client = client(app)
    assert test_client.get("/page", headers=PUBLIC).headers["x-html"] == "1"
    assert "x-html" not in test_client.get("/hello", headers=PUBLIC).headers


def test_order_and_none_removes_the_app_header() -> None:
    app = make_app(
        headers_config={
            "late": {"order": 10, "headers": {"X-Which": "late"}},
            "early": {"order": 1, "headers": {"X-Which": "early", "X-Early": "1"}},
            "remove": {"headers": {"X-Powered-By": None}},
        }
    )
    response = client(app).get("/status/200", headers=PUBLIC)
    assert response.headers["x-which"] == "late"
    assert response.headers["x-early"] == "1"
    assert "x-powered-by" not in response.headers
    assert response.headers.get_list("x-which") == ["late"]


def test_value_forms() -> None:
    app = make_app(
        use_default=False,
        headers_config={
            "values": {
                "headers": {
                    "X-Custom": "value",
                    "Cache-Control": ["no-cache", "no-store", "must-revalidate"],
                    "Permissions-Policy": ["geolocation=()", "microphone=()"],
                    "Content-Security-Policy": {
                        "default-src": ["'self'"],
                        "script-src": ["'self'", "https://cdn.example.com"],
                        "img-src": "'self'",
                        "upgrade-insecure-requests": [],
                    },
                }
            }
        },
    )
    response = client(app).get("/hello", headers=PUBLIC)
    assert response.headers["x-custom"] == "value"
    assert response.headers["cache-control"] == "no-cache; no-store; must-revalidate"
    assert response.headers["permissions-policy"] == "geolocation=(), microphone=()"
    assert response.headers["content-security-policy"] == (
        "default-src 'self'; script-src 'self' https://cdn.example.com; img-src 'self'; upgrade-insecure-requests"
    )


def test_path_match_is_relative_to_the_mount_point_and_root_path() -> None:
    sub = FastAPI()

    @sub.get("/api/thing")
    async def thing() -> dict[str, int]:
        return {"a": 1}

    sub.add_middleware(
        ArmorHeaderMiddleware, headers_config={"api": {"path_match": r"^/api/", "headers": {"X-A": "1"}}}
    )
    main = FastAPI()
    main.mount("/prefix", sub)
    response = client(main).get("/prefix/api/thing", headers=PUBLIC)
    assert response.status_code == 200
    assert response.headers["x-a"] == "1"

    # Served under a root path (uvicorn --root-path or a forwarded prefix): the same rule matches.
    rooted = make_app(headers_config={"api": {"path_match": r"^/api/", "headers": {"X-A": "1"}}})
    response = client(rooted, root_path="/service").get("/service/api/item", headers=PUBLIC)
    assert response.status_code == 200
    assert response.headers["x-a"] == "1"


# --- construction errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"path_match": "^/(unclosed", "headers": {}}, "path_match: invalid regular expression"),
        ({"netloc_match": 42, "headers": {}}, "netloc_match: expected a regular expression"),
        ({"headers": {"X-A": 42}}, "header 'X-A': expected str, list, dict or None"),
        ({"headers": {"X-A": ["a", 1]}}, "header 'X-A': expected a string or a list of strings"),
        ({"headers": {"X-A": "a\r\nSet-Cookie: x=1"}}, "control character"),
        ({"headers": {"Bad Name": "a"}}, "invalid header name"),
        ({"headers": {"CSP": {"bad directive": ["x"]}}}, "invalid directive name"),
        ({"status_code": (300, 200), "headers": {}}, "status_code"),
        ({"status_code": "200", "headers": {}}, "status_code"),
        ({"methods": "GET", "headers": {}}, "methods"),
        ({"order": "1", "headers": {}}, "order"),
        ({"path_macth": "^/", "headers": {}}, "unknown keys ['path_macth']"),
        ("not a dict", "expected a dict"),
    ],
)
def test_bad_entries_fail_at_construction_naming_the_entry(entry: Any, message: str) -> None:
    with pytest.raises(HeadersConfigError) as error:
        ArmorHeaderMiddleware(FastAPI(), headers_config={"my_entry": entry})
    assert "'my_entry'" in str(error.value)
    assert message in str(error.value)


def test_short_form_header_entries_from_the_specification() -> None:
    """The specification's value-types example puts headers straight in headers_config."""
    app = make_app(
        headers_config={
            "X-Custom": "value",
            "Cache-Control": ["no-cache", "no-store", "must-revalidate"],
            "Content-Security-Policy": {
                "default-src": ["'self'"],
                "script-src": ["'self'", "https://cdn.example.com"],
                "style-src": ["'self'", "'unsafe-inline'"],
            },
            "Permissions-Policy": ["geolocation=()", "microphone=()"],
            "X-Powered-By": None,
        }
    )
    response = client(app).get("/status/200", headers=PUBLIC)
    assert response.headers["x-custom"] == "value"
    assert response.headers["cache-control"] == "no-cache; no-store; must-revalidate"
    assert response.headers["content-security-policy"] == (
        "default-src 'self'; script-src 'self' https://cdn.example.com; style-src 'self' 'unsafe-inline'"
    )
    assert response.headers["permissions-policy"] == "geolocation=(), microphone=()"
    assert "x-powered-by" not in response.headers
    assert response.headers["x-frame-options"] == "DENY"  # the other defaults stay


@pytest.mark.parametrize(
    ("name", "entry", "message"),
    [
        ("api_endpoints", "value", "expected a dict"),  # snake_case: a rule name, so its value must be a rule
        ("docs", None, "expected a dict"),
        ("X-Custom", 42, "expected a dict"),
        ("X-Custom", {"default-src": ["'self'"], "path_match": "^/"}, "unknown keys"),
    ],
)
def test_short_form_is_only_for_header_names_and_values(name: str, entry: Any, message: str) -> None:
    with pytest.raises(HeadersConfigError) as error:
        ArmorHeaderMiddleware(FastAPI(), headers_config={name: entry})
    assert f"'{name}'" in str(error.value)
    assert message in str(error.value)


# --- nonce ----------------------------------------------------------------------------------------------------


def nonce_app() -> FastAPI:
    return make_app(
        headers_config={
            "page": {
                "path_match": r"^/(page|nonce)$",
                "headers": {
                    "Content-Security-Policy": {"default-src": ["'self'"], "script-src": ["'self'", CSP_NONCE]},
                    "Content-Security-Policy-Report-Only": {"style-src": [CSP_NONCE]},
                },
            }
        }
    )


def test_nonce_is_fresh_long_and_equal_to_request_state_nonce() -> None:
    test_client = client(nonce_app())
    seen = set()
    for _ in range(5):
        response = test_client.get("/nonce", headers=PUBLIC)
        nonce = response.json()["nonce"]
        assert len(bytes.fromhex(nonce)) >= 16  # 128 random bits, as hex (valid CSP base64-value characters)
        assert csp_directives(response.headers["content-security-policy"])["script-src"] == [
            "'self'",
            f"'nonce-{nonce}'",
        ]
        assert response.headers["content-security-policy-report-only"] == f"style-src 'nonce-{nonce}'"
        seen.add(nonce)
    assert len(seen) == 5
    page = test_client.get("/page", headers=PUBLIC)
    assert f"nonce='{page.headers['content-security-policy'].split('nonce-')[1].split(chr(39))[0]}'" in page.text


@pytest.mark.parametrize("use_default", [True, False])
def test_no_nonce_on_request_state_where_no_rule_carries_it(use_default: bool) -> None:
    app = make_app(use_default=use_default)
    seen: list[bool] = []

    @app.get("/state")
    async def state(request: Request) -> dict[str, bool]:
        seen.append(hasattr(request.state, "nonce"))
        return {}

    for path in ("/state", "/hello", "/docs", "/redoc"):
        response = client(app).get(path, headers=PUBLIC)
        assert "'nonce-" not in response.headers.get("content-security-policy", "")
    assert client(app).get("/nonce", headers=PUBLIC).json() == {"nonce": ""}
    assert seen == [False]


def test_nonce_where_a_rule_that_can_match_the_request_carries_it() -> None:
    nonce_policy = {"Content-Security-Policy": {"script-src": [CSP_NONCE]}}
    app = make_app(
        use_default=False,
        headers_config={
            # Host, path and method are known before the response: no nonce where they do not match.
            "host": {"netloc_match": r"^nonce\.example$", "headers": nonce_policy},
            "writes": {"path_match": r"^/api/", "methods": ["POST"], "headers": nonce_policy},
            # Content type and status are not: the nonce is drawn whenever such a rule may apply.
            "html": {"path_match": r"^/nonce$", "content_type_match": "^text/html", "headers": nonce_policy},
        },
    )
    test_client = client(app)
    assert test_client.get("/hello", headers=PUBLIC).headers.get("content-security-policy") is None
    assert (
        test_client.get("/hello", headers={"host": "nonce.example"})
        .headers["content-security-policy"]
        .startswith("script-src 'nonce-")
    )
    assert "content-security-policy" not in test_client.get("/api/item", headers=PUBLIC).headers
    posted = test_client.post("/api/item", headers=PUBLIC)
    assert posted.headers["content-security-policy"].startswith("script-src 'nonce-")
    # The JSON response of /nonce gets no CSP (the rule is for HTML), but the nonce was there for a page.
    response = test_client.get("/nonce", headers=PUBLIC)
    assert len(response.json()["nonce"]) == 32
    assert "content-security-policy" not in response.headers


def test_nested_middlewares_share_one_nonce() -> None:
    app = nonce_app()
    app.add_middleware(ArmorHeaderMiddleware, use_default=False, headers_config={"x": {"headers": {"X-N": "1"}}})
    response = client(app).get("/nonce", headers=PUBLIC)
    assert f"'nonce-{response.json()['nonce']}'" in response.headers["content-security-policy"]


# --- built-in rules: FastAPI docs and the /c2c admin page ----------------------------------------------------


def app_with_c2c_like_sub_app() -> FastAPI:
    main = make_app()
    sub = FastAPI()

    @sub.get("/", response_class=HTMLResponse)
    async def index(request: Request) -> str:
        return f"<style nonce='{request.state.nonce}'></style>"

    main.mount("/c2c", sub)
    return main


@pytest.mark.parametrize("path", ["/docs", "/c2c/docs", "/redoc", "/c2c/redoc", "/docs/oauth2-redirect"])
def test_docs_pages_get_a_csp_that_lets_them_render(path: str) -> None:
    response = client(app_with_c2c_like_sub_app()).get(path, headers=PUBLIC)
    assert response.status_code == 200
    csp = csp_directives(response.headers["content-security-policy"])
    assert "cross-origin-embedder-policy" not in response.headers
    assert csp["frame-ancestors"] == ["'none'"]
    assert "'unsafe-inline'" not in csp["script-src"]
    assert "'unsafe-eval'" not in csp["script-src"]
    if "redoc" in path:
        assert "https://cdn.jsdelivr.net/npm/redoc@2/" in csp["script-src"]
        assert "blob:" in csp["worker-src"]
        # ReDoc's styled-components inserts <style> elements at run time: no hash or nonce can name them.
        assert "'unsafe-inline'" in csp["style-src"]
    else:
        assert "'unsafe-inline'" not in csp["style-src"]
        if not path.endswith("oauth2-redirect"):
            assert "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/" in csp["script-src"]
    # Every resource the page loads is allowed by the policy, inline scripts by their hash and nothing else.
    for tag, attribute in (("script", "src"), ("link", "href")):
        for url in re.findall(rf"<{tag}[^>]*\b{attribute}=\"([^\"]+)\"", response.text):
            directive = "script-src" if tag == "script" else "img-src" if "favicon" in url else "style-src"
            assert source_allows(csp[directive], url), (directive, url)
    assert script_hashes(csp) == {sha256_source(script) for script in inline_scripts(response.text)}
    if "<style>" in response.text:
        assert "'unsafe-inline'" in csp["style-src"]


class _InlineScripts(HTMLParser):
    """The text of each <script> element without ``src``, as the HTML parser gives it (independent of ours)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.scripts: list[str] = []
        self._current: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script" and "src" not in dict(attrs):
            self._current = []

    def handle_data(self, data: str) -> None:
        if self._current is not None:
            self._current.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._current is not None:
            self.scripts.append("".join(self._current))
            self._current = None


def inline_scripts(html: str) -> list[str]:
    parser = _InlineScripts()
    parser.feed(html.replace("\r\n", "\n").replace("\r", "\n"))
    parser.close()
    return parser.scripts


def sha256_source(script: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"


def script_hashes(csp: dict[str, list[str]]) -> set[str]:
    return {source for source in csp.get("script-src", []) if source.startswith("'sha256-")}


def swagger_app(**fastapi: Any) -> FastAPI:
    app = FastAPI(**fastapi)

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    app.add_middleware(ArmorHeaderMiddleware)
    return app


@pytest.mark.parametrize(
    ("fastapi", "root_path"),
    [
        ({}, ""),
        ({"title": "Ünïcode </script> 'quoted'", "openapi_url": "/api/v1/openapi.json"}, ""),
        (
            {
                "swagger_ui_parameters": {"deepLinking": False, "syntaxHighlight": {"theme": "obsidian"}},
                "swagger_ui_init_oauth": {"clientId": "client-x", "usePkceWithAuthorizationCodeGrant": True},
                "swagger_ui_oauth2_redirect_url": "/docs/oauth2-redirect",
            },
            "/prefix",
        ),
    ],
)
def test_swagger_ui_csp_allows_exactly_the_inline_script_fastapi_serves(fastapi: Any, root_path: str) -> None:
    # The page of the installed FastAPI, whatever its parameters (they are all in the inline script).
    test_client = TestClient(swagger_app(**fastapi), base_url="http://example.com", root_path=root_path)
    response = test_client.get(f"{root_path}/docs", headers=PUBLIC)
    assert response.status_code == 200
    scripts = inline_scripts(response.text)
    assert len(scripts) == 1
    assert "SwaggerUIBundle(" in scripts[0]
    csp = csp_directives(response.headers["content-security-policy"])
    assert script_hashes(csp) == {sha256_source(scripts[0])}
    assert csp["script-src"] == [
        "'self'",
        sha256_source(scripts[0]),
        "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/",
    ]
    other = test_client.get(f"{root_path}/docs", headers={"host": "other.example.com"})
    assert other.headers["content-security-policy"] == response.headers["content-security-policy"]


async def test_script_hashes_follow_the_body_as_the_browser_reads_it() -> None:
    marker_rule = {
        "hashed": {
            "headers": {"Content-Security-Policy": {"script-src": ["'self'", headers.CSP_SCRIPT_HASHES, CSP_NONCE]}}
        }
    }
    cases = [
        # (content type, body, the scripts a browser hashes)
        (
            b"text/html",
            b"<script>a()</script><script src='/x.js'></script><SCRIPT type=module>b()</SCRIPT >",
            ["a()", "b()"],
        ),
        (b"text/html; charset=utf-8", b"<script>\r\nx = '\xc3\xa9'\r</script>", ["\nx = '\u00e9'\n"]),
        (b"text/html; charset=iso-8859-1", b"<script>x = '\xe9'</script>", ["x = '\u00e9'"]),
        (b"text/html", b"<p>no script</p>", []),
        (b"text/html", b"<script>same()</script><script>same()</script>", ["same()"]),
        (b"text/html; charset=unknown-charset", b"<script>a()</script>", []),
    ]
    for content_type, body, scripts in cases:
        middleware = ArmorHeaderMiddleware(None, use_default=False, headers_config=marker_rule)  # type: ignore[arg-type]
        sent, nonce = await call_body(middleware, content_type, [body])
        assert sent[0]["type"] == "http.response.start"
        assert [message.get("body") for message in sent[1:]] == [body]
        csp = dict(sent[0]["headers"])[b"content-security-policy"].decode()
        expected = " ".join(["'self'", *[sha256_source(script) for script in scripts], f"'nonce-{nonce}'"])
        assert csp == f"script-src {expected}", (content_type, body)


@pytest.mark.parametrize("case", ["streamed", "gzip", "empty"])
async def test_no_script_hash_when_the_body_cannot_be_read_whole(case: str) -> None:
    middleware = ArmorHeaderMiddleware(
        None,  # type: ignore[arg-type]
        use_default=False,
        headers_config={"h": {"headers": {"Content-Security-Policy": {"script-src": [headers.CSP_SCRIPT_HASHES]}}}},
    )
    chunks = {"streamed": [b"<script>a()", b"</script>"], "gzip": [gzip.compress(b"<script>a()</script>")], "empty": []}
    extra = [(b"content-encoding", b"gzip")] if case == "gzip" else []
    sent, _nonce = await call_body(middleware, b"text/html", chunks[case], extra)
    # The start goes out with the first body message (or alone), every chunk untouched and in order.
    assert [message["type"] for message in sent] == ["http.response.start"] + ["http.response.body"] * len(chunks[case])
    assert [message["body"] for message in sent[1:]] == chunks[case]
    assert dict(sent[0]["headers"])[b"content-security-policy"] == b"script-src"


async def call_body(
    middleware: Any, content_type: bytes, chunks: list[bytes], extra: list[tuple[bytes, bytes]] | None = None
) -> tuple[list[Any], str | None]:
    """One GET through ``middleware`` around an app sending ``chunks``; returns the sent messages and the nonce."""
    sent: list[Any] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        start_headers = [(b"content-type", content_type), *(extra or [])]
        await send({"type": "http.response.start", "status": 200, "headers": start_headers})
        if not chunks:
            return
        for index, chunk in enumerate(chunks):
            await send({"type": "http.response.body", "body": chunk, "more_body": index < len(chunks) - 1})

    async def receive() -> Any:
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/page", "root_path": "", "headers": [(b"host", b"example.com")]}
    middleware.app = app
    await middleware(scope, receive, send)
    return sent, scope.get("state", {}).get("nonce")


def source_allows(sources: list[str], url: str) -> bool:
    """CSP source matching for absolute URLs: a source ending with '/' is a path prefix, else an exact path."""
    without_query = url.split("?")[0]
    return any(
        without_query.startswith(source) if source.endswith("/") else without_query == source for source in sources
    )


def test_openapi_json_keeps_the_strict_policy() -> None:
    response = client(app_with_c2c_like_sub_app()).get("/c2c/openapi.json", headers=PUBLIC)
    assert response.status_code == 200
    assert response.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert "cross-origin-embedder-policy" in response.headers


def test_c2c_pages_get_a_nonce_policy() -> None:
    response = client(app_with_c2c_like_sub_app()).get("/c2c/", headers=PUBLIC)
    nonce = response.text.split("nonce='")[1].split("'")[0]
    csp = csp_directives(response.headers["content-security-policy"])
    assert csp["script-src"] == ["'self'", f"'nonce-{nonce}'"]
    assert csp["style-src"] == ["'self'", f"'nonce-{nonce}'"]
    assert csp["default-src"] == ["'self'"]


def test_the_real_c2c_admin_page_gets_the_nonce_policy() -> None:
    import c2casgiutils

    main = make_app()
    main.mount("/c2c", c2casgiutils.app)
    response = client(main).get("/c2c/", headers=PUBLIC)
    assert response.status_code == 200
    assert "'nonce-" in csp_directives(response.headers["content-security-policy"])["script-src"][1]


# --- pure ASGI behaviour --------------------------------------------------------------------------------------


def test_post_body_reaches_the_app_untouched() -> None:
    body = bytes(range(256)) * 4096  # 1 MiB, every byte value
    response = client(make_app()).post("/api/item", content=body, headers=PUBLIC)
    assert response.content == body


def test_streaming_response_is_sent_in_chunks() -> None:
    app = make_app()

    async def chunks() -> AsyncIterator[bytes]:
        for index in range(3):
            yield f"chunk{index}\n".encode()

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        return StreamingResponse(chunks(), media_type="text/plain")

    bodies: list[bytes] = []

    async def outer(scope: Scope, receive: Receive, send: Send) -> None:
        async def noting_send(message: Message) -> None:
            if message["type"] == "http.response.body":
                bodies.append(message.get("body", b""))
            await send(message)

        await app(scope, receive, noting_send)

    with client(outer).stream("GET", "/stream", headers=PUBLIC) as response:
        assert response.headers["x-frame-options"] == "DENY"
        assert list(response.iter_lines()) == ["chunk0", "chunk1", "chunk2"]
    # One message per chunk, as the endpoint yielded them: the middleware buffered nothing.
    assert [body for body in bodies if body] == [b"chunk0\n", b"chunk1\n", b"chunk2\n"]


VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")


def test_contextvars_set_by_the_app_survive() -> None:
    app = make_app()
    seen_outside: list[str] = []

    @app.get("/setvar")
    async def setvar() -> dict[str, str]:
        VAR.set("set by the endpoint")
        return {}

    async def outer(scope: Scope, receive: Receive, send: Send) -> None:
        await app(scope, receive, send)
        if scope["type"] == "http":
            seen_outside.append(VAR.get())

    assert client(outer).get("/setvar", headers=PUBLIC).status_code == 200
    assert seen_outside == ["set by the endpoint"]


def test_websocket_and_lifespan_pass_through() -> None:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        events.append("startup")
        yield
        events.append("shutdown")

    app = FastAPI(lifespan=lifespan)

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("echo " + await websocket.receive_text())
        await websocket.close()

    app.add_middleware(ArmorHeaderMiddleware)
    with client(app) as test_client:
        assert events == ["startup"]
        with test_client.websocket_connect("/ws") as websocket:
            websocket.send_text("hi")
            assert websocket.receive_text() == "echo hi"
    assert events == ["startup", "shutdown"]


def wsgi_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/html"), ("X-Powered-By", "wsgi")])
    return [b"wsgi:", body]


def test_wsgi_app_behind_the_middleware() -> None:
    app = ArmorHeaderMiddleware(
        WSGIMiddleware(wsgi_app),  # type: ignore[arg-type]
        headers_config={"x": {"content_type_match": "^text/html", "headers": {"X-Powered-By": None, "X-Html": "1"}}},
    )
    response = client(app).post("/anything", content=b"payload", headers=PUBLIC)
    assert response.text == "wsgi:payload"
    assert response.headers["x-html"] == "1"
    assert "x-powered-by" not in response.headers
    assert response.headers["x-frame-options"] == "DENY"


def test_wsgi_app_mounted_in_fastapi_and_plain_starlette() -> None:
    starlette_app = Starlette(
        routes=[Route("/", lambda request: PlainTextResponse("star")), Mount("/w", WSGIMiddleware(wsgi_app))]
    )  # type: ignore[arg-type]
    app = ArmorHeaderMiddleware(starlette_app, headers_config={"w": {"path_match": "^/w/", "headers": {"X-W": "1"}}})
    test_client = client(app)
    mounted = test_client.post("/w/x", content=b"b", headers=PUBLIC)
    assert mounted.text == "wsgi:b"
    assert mounted.headers["x-w"] == "1"
    plain = test_client.get("/", headers=PUBLIC)
    assert plain.text == "star"
    assert "x-w" not in plain.headers
    assert plain.headers["x-content-type-options"] == "nosniff"


def test_public_names() -> None:
    assert headers.CSP_NONCE == CSP_NONCE
    assert callable(headers.ForwardedHeadersMiddleware)


# --- caches and fast paths ----------------------------------------------------------------------------------


async def call_directly(middleware: Any, path: str = "/x", host: bytes = b"example.com", **response: Any) -> Any:
    """One request through ``middleware`` around a bare ASGI app; returns (response headers, nonce)."""
    sent: list[Any] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": response.get("status", 200),
                "headers": [(b"content-type", response.get("content_type", b"application/json"))],
            }
        )
        await send({"type": "http.response.body", "body": b"{}"})

    async def receive() -> Any:
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": response.get("method", "GET"),
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", host)],
        "server": ("internal", 80),
        "client": ("10.0.0.1", 1),
    }
    middleware.app = app
    await middleware(scope, receive, send)
    headers = {bytes(name).decode(): bytes(value).decode() for name, value in sent[0]["headers"]}
    return headers, scope.get("state", {}).get("nonce")


CACHE_RULES: dict[str, Any] = {
    "api_host": {"netloc_match": r"^api\.example\.com$", "headers": {"X-Host": "api"}},
    "api_path": {"path_match": r"^/api/", "headers": {"X-Path": "api"}},
    "writes": {"methods": ["POST", "DELETE"], "headers": {"X-Method": "write"}},
    "errors": {"status_code": (400, 499), "headers": {"X-Status": "client-error"}},
    "html": {"content_type_match": r"^text/html", "headers": {"X-Type": "html", "Content-Security-Policy": None}},
}

CACHE_KEYS = {"x-host", "x-path", "x-method", "x-status", "x-type"}


def expected_cache_headers(host: bytes, path: str, method: str, status: int, content_type: bytes) -> dict[str, str]:
    expected = {}
    if host == b"api.example.com":
        expected["x-host"] = "api"
    if path.startswith("/api/"):
        expected["x-path"] = "api"
    if method in ("POST", "DELETE"):
        expected["x-method"] = "write"
    if 400 <= status <= 499:
        expected["x-status"] = "client-error"
    if content_type.startswith(b"text/html"):
        expected["x-type"] = "html"
    return expected


async def test_cached_plans_follow_host_path_method_status_and_content_type() -> None:
    middleware = ArmorHeaderMiddleware(None, headers_config=CACHE_RULES)  # type: ignore[arg-type]
    cases = [
        (host, path, method, status, content_type)
        for host in (b"api.example.com", b"www.example.com")
        for path in ("/api/x", "/other")
        for method in ("GET", "POST")
        for status in (200, 404)
        for content_type in (b"application/json", b"text/html; charset=utf-8")
    ]
    for _ in range(3):  # the second and third passes are served from the caches
        for host, path, method, status, content_type in cases:
            sent, _nonce = await call_directly(
                middleware, path, host, method=method, status=status, content_type=content_type
            )
            custom = {name: value for name, value in sent.items() if name.startswith("x-") and name in CACHE_KEYS}
            assert custom == expected_cache_headers(host, path, method, status, content_type), (host, path, method)
            assert ("content-security-policy" in sent) is not content_type.startswith(b"text/html")
            assert sent["x-frame-options"] == "DENY"


def test_settings_http_is_read_on_every_request_even_when_cached(settings: Any) -> None:
    test_client = client(make_app())
    for http_mode in (False, True, False, True):
        settings.http = http_mode
        for _ in range(2):
            response = test_client.get("/hello", headers=PUBLIC)
            assert ("strict-transport-security" in response.headers) is not http_mode


def test_nonces_stay_fresh_past_one_batch_of_random_bytes() -> None:
    test_client = client(nonce_app())
    seen = set()
    for _ in range(headers._NoncePool.BATCH + 50):  # crosses a refill of the nonce pool
        response = test_client.get("/nonce", headers=PUBLIC)
        nonce = response.json()["nonce"]
        assert re.fullmatch(r"[0-9a-f]{32}", nonce)
        assert f"'nonce-{nonce}'" in response.headers["content-security-policy"]
        seen.add(nonce)
    assert len(seen) == headers._NoncePool.BATCH + 50


NONCE_EVERYWHERE: dict[str, Any] = {"n": {"headers": {"Content-Security-Policy": {"script-src": [CSP_NONCE]}}}}


def _child_nonce(connection: Any) -> None:
    import asyncio

    middleware = ArmorHeaderMiddleware(None, headers_config=NONCE_EVERYWHERE)  # type: ignore[arg-type]
    connection.send(asyncio.run(call_directly(middleware))[1])
    connection.close()


async def test_a_forked_process_never_reuses_the_parents_nonces() -> None:
    import multiprocessing

    middleware = ArmorHeaderMiddleware(None, headers_config=NONCE_EVERYWHERE)  # type: ignore[arg-type]
    await call_directly(middleware)  # the pool now holds unused nonces that a forked child inherits
    context = multiprocessing.get_context("fork")
    parent_end, child_end = context.Pipe()
    child = context.Process(target=_child_nonce, args=(child_end,))
    child.start()
    try:
        assert parent_end.poll(30), "the child did not answer"
        child_nonce = parent_end.recv()
    finally:
        child.join(30)
        if child.is_alive():
            child.kill()
    parent_nonces = {(await call_directly(middleware))[1] for _ in range(5)}
    assert re.fullmatch(r"[0-9a-f]{32}", child_nonce)
    assert child_nonce not in parent_nonces


async def test_caches_stay_bounded_under_many_distinct_paths_hosts_and_content_types() -> None:
    middleware = ArmorHeaderMiddleware(None, headers_config=CACHE_RULES)  # type: ignore[arg-type]
    limit = headers._MAX_CACHED_MASKS
    for index in range(limit + 100):
        sent, _nonce = await call_directly(middleware, f"/api/{index}", f"h{index}.example.com".encode())
        assert sent["x-path"] == "api"
        assert len(middleware._requests) <= limit
    for index in range(headers._MAX_CACHED_PLANS + 100):
        content_type = f"text/html; charset=x{index}".encode()
        sent, _nonce = await call_directly(middleware, content_type=content_type)
        assert sent["x-type"] == "html"
        assert len(middleware._responses) <= headers._MAX_CACHED_PLANS
    assert len(middleware._plans) <= headers._MAX_CACHED_PLANS
    sent, _nonce = await call_directly(middleware, "/api/again", b"api.example.com", method="POST", status=404)
    assert {name for name in sent if name in CACHE_KEYS} == {"x-host", "x-path", "x-method", "x-status"}


@pytest.mark.parametrize("case", [bytes.lower, bytes.upper, bytes.title])
async def test_the_apps_headers_are_read_and_replaced_whatever_the_case_of_their_names(case: Any) -> None:
    """Lowercase names (as ASGI asks) are looked up as they are, others are lowered first: the same answer."""
    sent: list[Any] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        names = (b"content-type", b"x-frame-options", b"x-kept")
        start_headers = [
            (case(name), value) for name, value in zip(names, (b"text/html", b"SAMEORIGIN", b"1"), strict=True)
        ]
        await send({"type": "http.response.start", "status": 200, "headers": start_headers})
        await send({"type": "http.response.body", "body": b"<p>page</p>"})

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/page", "root_path": "", "headers": [(b"host", b"example.com")]}
    await ArmorHeaderMiddleware(app)(scope, None, send)  # type: ignore[arg-type]
    headers = sent[0]["headers"]
    assert headers[:2] == [(case(b"content-type"), b"text/html"), (case(b"x-kept"), b"1")]
    by_name = dict(headers[2:])
    assert by_name[b"x-frame-options"] == b"DENY"  # the app's own, replaced
    assert [name.lower() for name, _ in headers].count(b"x-frame-options") == 1
    assert csp_directives(by_name[b"content-security-policy"].decode())["default-src"] == ["'self'"]  # read as HTML
