"""Security headers (ArmorHeaderMiddleware, CSP nonces) and trusted proxy headers, as pure ASGI middlewares.

``ArmorHeaderMiddleware`` only wraps ``send``: it rewrites the headers of ``http.response.start`` and passes
every other message through untouched, so bodies stream, the request body is never read and contextvars set
by the application survive. Rules are compiled once at construction. A request costs one lookup in a
bounded cache of the final header list (per Host, path, method and settings.http), a second one on the
status and content type only when such a rule applies, and one rebuild of the header list.
"""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from c2casgiutils import config
from c2casgiutils._forwarded import ForwardedHeadersMiddleware

__all__ = [
    "CSP_NONCE",
    "DEFAULT_HEADERS_CONFIG",
    "ArmorHeaderMiddleware",
    "ForwardedHeadersMiddleware",
    "HeaderMatcher",
    "HeaderValue",
    "HeadersConfigError",
]

CSP_NONCE = "'nonce'"
"""Marker for a CSP source list: replaced by ``'nonce-<random>'``, the value of ``request.state.nonce``."""

HeaderValue = str | list[str] | dict[str, str | list[str]] | None
"""str as is; list joined with ``"; "`` (``", "`` for Permissions-Policy); dict CSP style; None removes."""


class HeaderMatcher(TypedDict, total=False):
    """One entry of ``headers_config``: when it applies, and the headers it sets or removes."""

    netloc_match: str | None
    path_match: str | None
    content_type_match: str | None
    methods: list[str] | None
    status_code: int | tuple[int, int] | None
    order: int
    headers: dict[str, HeaderValue]


class HeadersConfigError(ValueError):
    """A ``headers_config`` entry is invalid; the message names the entry."""


_HTML = r"^text/html(?:;|$)"
# Hosts that a browser treats as local: HSTS there would pin a developer's browser to https.
_LOCAL_NETLOC = r"^(?:localhost|[^:/]*\.localhost|127(?:\.\d{1,3}){3}|\[::1\])(?::\d+)?$"
# The /c2c sub-app's HTML pages (admin page and friends), wherever the route prefix puts them.
_C2C_PAGES = r"^(?:.*/)?c2c(?:/.*)?$"
_SELF = "'self'"

DEFAULT_HEADERS_CONFIG: dict[str, HeaderMatcher] = {
    "default": {
        "order": -1,
        "headers": {
            "Content-Security-Policy": {
                "default-src": [_SELF],
                "frame-ancestors": ["'none'"],
                "base-uri": [_SELF],
                "form-action": [_SELF],
            },
            "X-Frame-Options": "DENY",
            "Strict-Transport-Security": ["max-age=31536000", "includeSubDomains"],
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Permissions-Policy": ["geolocation=()", "microphone=()", "camera=()", "payment=()", "usb=()"],
            "X-DNS-Prefetch-Control": "off",
            "Origin-Agent-Cluster": "?1",
            "Cross-Origin-Embedder-Policy": "require-corp",
            "Cross-Origin-Opener-Policy": "same-origin",
            "Cross-Origin-Resource-Policy": "same-origin",
        },
    },
    "localhost": {"netloc_match": _LOCAL_NETLOC, "headers": {"Strict-Transport-Security": None}},
    # The admin page only loads its own assets from /c2c/static/ and tags its inline code with the nonce.
    "c2c": {
        "path_match": _C2C_PAGES,
        "content_type_match": _HTML,
        "headers": {
            "Content-Security-Policy": {
                "default-src": [_SELF],
                "script-src": [_SELF, CSP_NONCE],
                "style-src": [_SELF, CSP_NONCE],
                "img-src": [_SELF, "data:"],
                "frame-ancestors": ["'none'"],
                "base-uri": [_SELF],
                "form-action": [_SELF],
            },
        },
    },
    # FastAPI's Swagger UI: bundle and CSS from jsDelivr, an inline start-up script whose text depends on the
    # application (so no hash can be pinned), the favicon from fastapi.tiangolo.com.
    "docs": {
        "path_match": r"^(?:.*/)?docs(?:/oauth2-redirect)?/?$",
        "content_type_match": _HTML,
        "headers": {
            "Content-Security-Policy": {
                "default-src": [_SELF],
                "script-src": [_SELF, "'unsafe-inline'", "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/"],
                "style-src": [_SELF, "'unsafe-inline'", "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/"],
                "img-src": [_SELF, "data:", "https://fastapi.tiangolo.com/img/"],
                "frame-ancestors": ["'none'"],
                "base-uri": [_SELF],
                "form-action": [_SELF],
            },
            "Cross-Origin-Embedder-Policy": None,
        },
    },
    # FastAPI's ReDoc: bundle from jsDelivr, Google fonts, inline styles (its own and styled-components),
    # a search worker started from a blob: URL.
    "redoc": {
        "path_match": r"^(?:.*/)?redoc/?$",
        "content_type_match": _HTML,
        "headers": {
            "Content-Security-Policy": {
                "default-src": [_SELF],
                "script-src": [_SELF, "https://cdn.jsdelivr.net/npm/redoc@2/"],
                "style-src": [_SELF, "'unsafe-inline'", "https://fonts.googleapis.com/css"],
                "font-src": [_SELF, "https://fonts.gstatic.com/"],
                "img-src": [_SELF, "data:", "https://fastapi.tiangolo.com/img/", "https://cdn.redoc.ly/redoc/"],
                "worker-src": [_SELF, "blob:"],
                "frame-ancestors": ["'none'"],
                "base-uri": [_SELF],
                "form-action": [_SELF],
            },
            "Cross-Origin-Embedder-Policy": None,
        },
    },
}

_CSP_HEADERS = frozenset({"content-security-policy", "content-security-policy-report-only"})
_COMMA_LIST_HEADERS = frozenset({"permissions-policy"})
_MATCHER_KEYS = frozenset(HeaderMatcher.__annotations__)
_TOKEN_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_FORBIDDEN_VALUE_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_NONCE_SCOPE_KEY = "c2casgiutils.nonce"
_MAX_CACHED_PLANS = 1024
_MAX_CACHED_MASKS = 4096

# A header value split around the nonce marker: parts joined with the request's nonce source at send time.
_ValueParts = tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class _Rule:
    name: str
    netloc: re.Pattern[str] | None
    path: re.Pattern[str] | None
    content_type: re.Pattern[str] | None
    methods: frozenset[str] | None
    status: tuple[int, int] | None
    http_mode_only: bool
    headers: tuple[tuple[bytes, _ValueParts | None], ...]


@dataclass(frozen=True, slots=True)
class _Plan:
    """The merged effect of a set of matching rules: what to drop from the response and what to add."""

    drop: frozenset[bytes]
    static: tuple[tuple[bytes, bytes], ...]
    with_nonce: tuple[tuple[bytes, _ValueParts], ...]


def _fail(name: str, message: str) -> HeadersConfigError:
    return HeadersConfigError(f"headers_config entry {name!r}: {message}")


def _str_list(name: str, header: str, value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return list(value)
    raise _fail(name, f"header {header!r}: expected a string or a list of strings, got {value!r}")


def _render_value(name: str, header: str, value: Any) -> str | None:
    """The header text of one configured value (see HeaderValue)."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value
    elif isinstance(value, list | tuple):
        separator = ", " if header.lower() in _COMMA_LIST_HEADERS else "; "
        text = separator.join(_str_list(name, header, value))
    elif isinstance(value, dict):
        directives = []
        for directive, sources in value.items():
            if not isinstance(directive, str) or not _TOKEN_RE.match(directive):
                raise _fail(name, f"header {header!r}: invalid directive name {directive!r}")
            directives.append(" ".join([directive, *_str_list(name, header, sources)]))
        text = "; ".join(directives)
    else:
        raise _fail(
            name, f"header {header!r}: expected str, list, dict or None, got {type(value).__name__} ({value!r})"
        )
    if _FORBIDDEN_VALUE_RE.search(text):
        raise _fail(name, f"header {header!r}: the value contains a control character: {text!r}")
    return text.strip()


def _compile_regex(name: str, key: str, pattern: Any, flags: int = 0) -> re.Pattern[str] | None:
    if pattern is None:
        return None
    if not isinstance(pattern, str):
        raise _fail(name, f"{key}: expected a regular expression string, got {pattern!r}")
    try:
        return re.compile(pattern, flags)
    except re.error as error:
        raise _fail(name, f"{key}: invalid regular expression {pattern!r}: {error}") from None


def _status_range(name: str, value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        low, high = value, value
    elif (
        isinstance(value, tuple | list)
        and len(value) == 2
        and all(isinstance(item, int) and not isinstance(item, bool) for item in value)
    ):
        low, high = value
    else:
        raise _fail(name, f"status_code: expected an int or a (low, high) pair of ints, got {value!r}")
    if not 100 <= low <= high <= 599:
        raise _fail(name, f"status_code: expected codes between 100 and 599 with low <= high, got {value!r}")
    return (low, high)


def _methods(name: str, value: Any) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str) or not all(isinstance(item, str) for item in value):
        raise _fail(name, f"methods: expected a list of HTTP method names, got {value!r}")
    return frozenset(method.upper() for method in value)


def _is_short_form(name: str, entry: Any) -> bool:
    """Whether an entry is the short form ``"Header-Name": value`` (a header for every response).

    The specification shows header values straight in ``headers_config`` (``"X-Custom": "value"``,
    ``"Content-Security-Policy": {...}``, ``"Unwanted-Header": None``). Rule names are snake_case by convention,
    header names are not: a name with a dash or a capital and no underscore, whose value is a header value (not
    a dict of matcher keys), is read as a header.
    """
    if "_" in name or not _TOKEN_RE.match(name) or not ("-" in name or name[:1].isupper()):
        return False
    if entry is None or isinstance(entry, str | list | tuple):
        return True
    return isinstance(entry, Mapping) and not set(entry) & _MATCHER_KEYS


def _compile_rule(name: str, entry: Any) -> tuple[int, _Rule]:
    """Validate one ``headers_config`` entry and compile it; return it with its order."""
    if _is_short_form(name, entry):
        entry = {"headers": {name: entry}}
    if not isinstance(entry, Mapping):
        raise _fail(name, f"expected a dict with the keys {sorted(_MATCHER_KEYS)}, got {entry!r}")
    unknown = set(entry) - _MATCHER_KEYS
    if unknown:
        raise _fail(name, f"unknown keys {sorted(unknown)}; accepted keys are {sorted(_MATCHER_KEYS)}")
    order = entry.get("order", 0)
    if not isinstance(order, int) or isinstance(order, bool):
        raise _fail(name, f"order: expected an int, got {order!r}")
    headers = entry.get("headers", {})
    if not isinstance(headers, Mapping):
        raise _fail(name, f"headers: expected a dict of header name to value, got {headers!r}")
    compiled_headers: list[tuple[bytes, _ValueParts | None]] = []
    for header, value in headers.items():
        if not isinstance(header, str) or not _TOKEN_RE.match(header):
            raise _fail(name, f"invalid header name {header!r}")
        text = _render_value(name, header, value)
        parts: _ValueParts | None = None
        if text is not None:
            pieces = text.split(CSP_NONCE) if header.lower() in _CSP_HEADERS else [text]
            parts = tuple(piece.encode("latin-1", errors="strict") for piece in pieces)
        compiled_headers.append((header.lower().encode("ascii"), parts))
    rule = _Rule(
        name=name,
        netloc=_compile_regex(name, "netloc_match", entry.get("netloc_match")),
        path=_compile_regex(name, "path_match", entry.get("path_match")),
        content_type=_compile_regex(name, "content_type_match", entry.get("content_type_match"), re.IGNORECASE),
        methods=_methods(name, entry.get("methods")),
        status=_status_range(name, entry.get("status_code")),
        http_mode_only=False,
        headers=tuple(compiled_headers),
    )
    return order, rule


# Applied last: a development server in plain HTTP (settings.http) never sends HSTS.
_HTTP_MODE_RULE = _Rule(
    name="<settings.http>",
    netloc=None,
    path=None,
    content_type=None,
    methods=None,
    status=None,
    http_mode_only=True,
    headers=((b"strict-transport-security", None),),
)


def _compile_rules(headers_config: Mapping[str, Any] | None, use_default: bool) -> list[_Rule]:
    entries: dict[str, Any] = dict(DEFAULT_HEADERS_CONFIG) if use_default else {}
    if headers_config is not None:
        if not isinstance(headers_config, Mapping):
            raise HeadersConfigError(f"headers_config: expected a dict of entries, got {headers_config!r}")
        # An entry named like a default one replaces it (e.g. "docs" to self-host Swagger UI).
        entries.update(headers_config)
    ordered = sorted((_compile_rule(str(name), entry) for name, entry in entries.items()), key=lambda item: item[0])
    return [rule for _, rule in ordered] + [_HTTP_MODE_RULE]


def _netloc(host: bytes | None, server: Any) -> str:
    """The request's host[:port]: the Host header, else the server address."""
    if host is not None:
        return bytes(host).decode("latin-1")
    if not server:
        return ""
    return f"{server[0]}:{server[1]}" if server[1] is not None else str(server[0])


def _relative_path(path: str, root_path: str) -> str:
    """The path below the application root (``scope["root_path"]``), always starting with ``/``."""
    if root_path and path.startswith(root_path) and path[len(root_path) : len(root_path) + 1] in ("", "/"):
        path = path[len(root_path) :]
    return path or "/"


class _NoncePool:
    """128-bit random nonces as 32 hex digits, drawn from ``os.urandom`` in batches.

    One system call per batch instead of one per request. ``deque.popleft`` is atomic, so two threads never
    get the same nonce; a forked child drops the batch it inherited so it never reuses the parent's nonces.
    """

    BATCH = 256

    def __init__(self) -> None:
        self._nonces: deque[str] = deque()
        self.pop = self._nonces.popleft  # raises IndexError when empty: then call refill_and_pop()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._nonces.clear)

    def refill_and_pop(self) -> str:
        digits = os.urandom(16 * self.BATCH).hex()
        self._nonces.extend(digits[start : start + 32] for start in range(0, len(digits), 32))
        return self._nonces.popleft()


_NONCES = _NoncePool()
_pop_nonce = _NONCES.pop


class ArmorHeaderMiddleware:
    """Add security headers to HTTP responses, chosen by rules on host, path, method, status and content type.

    Rules (``headers_config`` entries, plus the defaults unless ``use_default=False``) apply in ascending
    ``order`` (ties: defaults first, then the given order); a later rule's value replaces an earlier one and
    the application's own header of that name; ``None`` removes the header. ``request.state.nonce`` holds a
    fresh random nonce on every HTTP request; ``CSP_NONCE`` in a CSP value becomes ``'nonce-<that value>'``.
    """

    def __init__(
        self, app: ASGIApp, headers_config: Mapping[str, HeaderMatcher] | None = None, use_default: bool = True
    ) -> None:
        self.app = app
        rules = _compile_rules(headers_config, use_default)
        self._rules = rules
        bits = [(1 << index, rule) for index, rule in enumerate(rules)]
        self._unconditional_mask = sum(
            bit
            for bit, rule in bits
            if rule.netloc is None and rule.path is None and rule.methods is None and not rule.http_mode_only
        )
        self._request_checks = [
            (bit, rule)
            for bit, rule in bits
            if (rule.netloc is not None or rule.path is not None or rule.methods is not None)
            and not rule.http_mode_only
        ]
        self._http_mode_mask = sum(bit for bit, rule in bits if rule.http_mode_only)
        self._needs_netloc = any(rule.netloc is not None for rule in rules)
        self._needs_path = any(rule.path is not None for rule in rules)
        self._response_checks = [
            (bit, rule) for bit, rule in bits if rule.status is not None or rule.content_type is not None
        ]
        self._response_mask = sum(bit for bit, _ in self._response_checks)
        self._plans: dict[int, _Plan] = {}
        # (Host, path, root path, method, settings.http) -> the matching rules and, when no status or
        # content-type rule is among them, the final plan. (rules, status, content type) -> plan. Both are
        # bounded (cleared when full), so hostile hosts or paths cost a recomputation, never memory.
        self._requests: dict[tuple[Any, ...], tuple[int, _Plan | None]] = {}
        self._responses: dict[tuple[int, int, bytes], _Plan] = {}

    def _request_rules(self, key: tuple[Any, ...]) -> tuple[int, _Plan | None]:
        """The rules matching what is known before the response (host, path, method, settings.http)."""
        host, path, root_path, method, http_mode, server = key
        netloc = _netloc(host, server) if self._needs_netloc else ""
        relative_path = _relative_path(path, root_path) if self._needs_path else ""
        mask = self._unconditional_mask
        for bit, rule in self._request_checks:
            if rule.netloc is not None and not rule.netloc.match(netloc):
                continue
            if rule.path is not None and not rule.path.match(relative_path):
                continue
            if rule.methods is not None and method not in rule.methods:
                continue
            mask |= bit
        if http_mode:
            mask |= self._http_mode_mask
        return mask, (None if mask & self._response_mask else self._plan(mask))

    def _response_plan(self, mask: int, message: Message) -> _Plan:
        """The plan once the status code and content type rules among ``mask`` are checked."""
        status: int = message["status"]
        content_type = b""
        for key, value in message.get("headers", ()):
            if key.lower() == b"content-type":
                content_type = bytes(value)
                break
        cache_key = (mask, status, content_type)
        plan = self._responses.get(cache_key)
        if plan is None:
            content_type_text = content_type.decode("latin-1")
            for bit, rule in self._response_checks:
                if not mask & bit:
                    continue
                status_fails = rule.status is not None and not rule.status[0] <= status <= rule.status[1]
                type_fails = rule.content_type is not None and not rule.content_type.match(content_type_text)
                if status_fails or type_fails:
                    mask &= ~bit
            plan = self._plan(mask)
            if len(self._responses) >= _MAX_CACHED_PLANS:
                self._responses.clear()
            self._responses[cache_key] = plan
        return plan

    def _plan(self, mask: int) -> _Plan:
        plan = self._plans.get(mask)
        if plan is None:
            merged: dict[bytes, _ValueParts | None] = {}
            for index, rule in enumerate(self._rules):
                if mask & (1 << index):
                    for name, parts in rule.headers:
                        merged.pop(name, None)  # keep the insertion order of the last writer
                        merged[name] = parts
            plan = _Plan(
                drop=frozenset(merged),
                static=tuple(
                    (name, parts[0]) for name, parts in merged.items() if parts is not None and len(parts) == 1
                ),
                with_nonce=tuple(
                    (name, parts) for name, parts in merged.items() if parts is not None and len(parts) > 1
                ),
            )
            if len(self._plans) < _MAX_CACHED_PLANS:
                self._plans[mask] = plan
        return plan

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        # One nonce per request, shared with nested ArmorHeaderMiddlewares (mounted sub-apps).
        nonce: str | None = scope.get(_NONCE_SCOPE_KEY)
        if nonce is None:
            try:
                nonce = _pop_nonce()
            except IndexError:
                nonce = _NONCES.refill_and_pop()
            scope[_NONCE_SCOPE_KEY] = nonce
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state["nonce"] = nonce

        host = None
        if self._needs_netloc:
            for name, value in scope["headers"]:
                if name == b"host":
                    host = value
                    break
        key = (
            host,
            scope["path"] if self._needs_path else None,
            scope.get("root_path", "") if self._needs_path else None,
            scope.get("method", "GET"),
            config.settings.http,
            scope.get("server") if host is None and self._needs_netloc else None,
        )
        try:
            selected = self._requests.get(key)
        except TypeError:  # an unhashable Host value or server address: no caching
            selected = self._request_rules(key)
        if selected is None:
            selected = self._request_rules(key)
            if len(self._requests) >= _MAX_CACHED_MASKS:
                self._requests.clear()
            self._requests[key] = selected
        mask, request_plan = selected

        # A plain function returning send's awaitable: one coroutine less per message than an ``async def``.
        def send_with_headers(message: Message) -> Awaitable[None]:
            if message["type"] == "http.response.start":
                plan = request_plan or self._response_plan(mask, message)
                drop = plan.drop
                if drop:
                    headers = []
                    for item in message.get("headers", ()):  # a loop: cheaper than a comprehension here
                        if item[0].lower() not in drop:
                            headers.append(item)
                    headers += plan.static
                    if plan.with_nonce:
                        source = b"'nonce-" + nonce.encode("ascii") + b"'"
                        headers += [(name, source.join(parts)) for name, parts in plan.with_nonce]
                    message["headers"] = headers
            return send(message)

        await self.app(scope, receive, send_with_headers)
