"""ForwardedHeadersMiddleware: apply the scheme, host, port, prefix and client given by a trusted proxy.

The trust model is werkzeug's ProxyFix one, plus a list of trusted peers:

- only a request whose direct peer (``scope["client"]``) is a trusted proxy is rewritten;
- only the fields listed in ``fields`` (``for``, ``proto``, ``host``, ``port``, ``prefix``) are applied; a proxy
  that does not set or clear a header passes on what the client wrote, so a field is listed only when the
  proxy in front sets it;
- only one header family is read: ``X-Forwarded-*`` or RFC 7239 ``Forwarded``, never the other one, which the
  proxy does not touch and the client can therefore write. One exception: ``Forwarded`` has no prefix, so in
  ``forwarded`` mode ``X-Forwarded-Prefix`` is read when ``prefix`` is listed (the operator states that the
  proxy sets or clears it), as Spring's ForwardedHeaderFilter does;
- every list (X-Forwarded-For, an appended X-Forwarded-Host, several ``Forwarded`` elements, several header
  lines) is read at most ``hops`` places from the right, where the proxies append: the client writes on the
  left. Within those places the client is the right-most address that is not a trusted proxy, and the
  other fields are read from that same hop.

Malformed values are ignored: they never raise, never rewrite anything. IPv4-mapped IPv6 addresses
(``::ffff:1.2.3.4``) are given in their IPv4 form.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from starlette.types import ASGIApp, Receive, Scope, Send

from c2casgiutils import config

_LOGGER = logging.getLogger(__name__)

HeadersType = Literal["x-forwarded", "forwarded", "none"]
FIELDS = ("for", "proto", "host", "port", "prefix")
"""The forwarded fields that ``fields`` may list (werkzeug's ProxyFix ``x_for``, ``x_proto``...)."""
_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_HTTP_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
_WEBSOCKET_SCHEMES = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
_MAX_HEADER_LENGTH = 4096  # longer forwarded values are ignored (no quadratic work on hostile input)
_MAX_HOPS = 32
_X_FORWARDED_HEADERS = {
    "for": b"x-forwarded-for",
    "proto": b"x-forwarded-proto",
    "host": b"x-forwarded-host",
    "port": b"x-forwarded-port",
    "prefix": b"x-forwarded-prefix",
}
_MAPPED_PREFIX = "::ffff:"
_MAX_CACHED_PEERS = 4096
_MAX_CACHED_REWRITES = 1024
_HOST_RE = re.compile(
    r"^(?P<host>[A-Za-z0-9](?:[A-Za-z0-9._-]{0,252})|\[(?P<ipv6>[0-9A-Fa-f:.]{2,45})\])(?::(?P<port>\d{1,5}))?$"
)
_PREFIX_RE = re.compile(r"^(?:/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)+/?$")
_TCHARS = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
# One forwarded-pair (RFC 7239 section 4): token "=" ( token / quoted-string ).
_PAIR_RE = re.compile(rf"\s*({_TCHARS})=({_TCHARS}|\"(?:[^\"\\\x00-\x1f\x7f]|\\[\x20-\x7e])*\")\s*")
_NODE_RE = re.compile(r"^(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<ipv4>[0-9.]+))(?::(?P<port>\d{1,5}|_[A-Za-z0-9._-]+))?$")


class TrustedProxies:
    """The proxies whose forwarded headers are believed: IP addresses, CIDR networks, or ``*`` for any."""

    def __init__(self, trusted_hosts: list[str] | str) -> None:
        items = trusted_hosts.split(",") if isinstance(trusted_hosts, str) else list(trusted_hosts)
        items = [item.strip() for item in items if item.strip()]
        self.trust_all = "*" in items
        self._networks: list[_IPNetwork] = []
        for item in items:
            if item == "*":
                continue
            try:
                self._networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(
                    f"trusted_hosts: {item!r} is not an IP address, a CIDR network (e.g. 10.0.0.0/8) or '*'"
                ) from None
        self.peers: dict[Any, bool] = {}  # peer host -> trusted, filled by ``in``

    def address(self, address: _IPAddress) -> bool:
        if self.trust_all:
            return True
        return any(_unmapped(address) in network for network in self._networks)

    def __contains__(self, host: object) -> bool:
        """Whether the peer ``host`` (a string from ``scope["client"]``) is trusted; cached per host."""
        if self.trust_all:
            return True
        if not isinstance(host, str):
            return False
        trusted = self.peers.get(host)
        if trusted is None:
            try:
                trusted = self.address(ipaddress.ip_address(host))
            except ValueError:
                trusted = False
            if len(self.peers) >= _MAX_CACHED_PEERS:
                self.peers.clear()  # in place: ForwardedHeadersMiddleware holds this dict
            self.peers[host] = trusted
        return trusted


@dataclass(slots=True)
class _Hop:
    """What one proxy hop tells about the request it received."""

    client: tuple[str, int] | None = None
    proto: str | None = None
    host: str | None = None
    port: int | None = None
    prefix: str | None = None


_EMPTY_HOP = _Hop()


def _unmapped(address: _IPAddress) -> _IPAddress:
    """``::ffff:1.2.3.4`` as ``1.2.3.4``: the client an IPv4-mapped IPv6 address stands for."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@functools.lru_cache(maxsize=256)
def plain_address(host: str) -> str:
    """A peer address in the form to show and compare: IPv4-mapped IPv6 in IPv4 form, anything else as is."""
    try:
        return str(_unmapped(ipaddress.ip_address(host)))
    except ValueError:
        return host


@functools.lru_cache(maxsize=4096)
def _parse_node(value: str) -> tuple[str, int] | None:
    """An address from ``for=`` or X-Forwarded-For: ``ip``, ``ip:port``, ``[ipv6]:port``; else None."""
    value = value.strip()
    try:
        return str(_unmapped(ipaddress.ip_address(value))), 0
    except ValueError:
        pass
    match = _NODE_RE.match(value)
    if match is None:
        return None
    try:
        address = _unmapped(ipaddress.ip_address(match["ipv6"] or match["ipv4"]))
    except ValueError:
        return None
    port_text = match["port"]
    port = int(port_text) if port_text and port_text.isdigit() else 0
    return (str(address), port) if port <= 65535 else None


def _parse_forwarded(value: str) -> list[dict[str, str]] | None:
    """Parse RFC 7239 ``Forwarded``: a list of elements of ``name=value`` pairs; None if malformed."""
    elements: list[dict[str, str]] = []
    position = 0
    element: dict[str, str] = {}
    while True:
        match = _PAIR_RE.match(value, position)
        if match is None:
            return None
        name, raw = match[1].lower(), match[2]
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        if name in element:
            return None  # a parameter twice in one element is invalid (RFC 7239 section 4)
        element[name] = raw
        position = match.end()
        if position == len(value):
            elements.append(element)
            return elements
        separator = value[position]
        position += 1
        if separator == ",":
            elements.append(element)
            element = {}
            if len(elements) >= _MAX_HOPS:
                return None
        elif separator != ";":
            return None


def _valid_proto(value: str | None) -> str | None:
    if value is None:
        return None
    proto = value.strip().lower()
    return proto if proto in _DEFAULT_PORTS else None


def _valid_port(value: str | None) -> int | None:
    if value is None:
        return None
    text = value.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 5:
        return None
    port = int(text)
    return port if 0 < port <= 65535 else None


@functools.lru_cache(maxsize=512)
def _split_host(value: str | None) -> tuple[str, int | None] | None:
    """A forwarded host as ``(host, port or None)``; None for anything that is not a plain host[:port]."""
    if value is None:
        return None
    match = _HOST_RE.match(value.strip())
    if match is None:
        return None
    if match["ipv6"] is not None:
        try:
            host = ipaddress.IPv6Address(match["ipv6"]).compressed
        except ValueError:
            return None
    else:
        host = match["host"].lower()
    port: int | None = None
    if match["port"] is not None:
        port = _valid_port(match["port"])
        if port is None:
            return None
    return host, port


@functools.lru_cache(maxsize=512)
def _valid_prefix(value: str | None) -> str | None:
    if value is None:
        return None
    prefix = value.strip()
    if not _PREFIX_RE.match(prefix) or "//" in prefix or "/../" in f"{prefix}/" or "/./" in f"{prefix}/":
        return None
    return prefix.rstrip("/")


def _pick(values: list[str] | None, depth: int) -> str | None:
    """The value ``depth`` places from the right of a list the proxies append to; None when it is shorter.

    A shorter list was not written by ``depth`` proxies: its left-most value may be the client's.
    """
    if not values or len(values) < depth:
        return None
    return values[len(values) - depth]


def check_fields(fields: Iterable[str] | str, name: str = "fields") -> frozenset[str]:
    """The forwarded fields to apply, out of ``FIELDS``; ValueError naming ``name`` for anything else."""
    items = fields.split(",") if isinstance(fields, str) else list(fields)
    chosen = [str(item).strip().lower() for item in items if str(item).strip()]
    unknown = [item for item in chosen if item not in FIELDS]
    if unknown:
        raise ValueError(
            f"{name}: unknown field(s) {', '.join(map(repr, unknown))}; expected some of {', '.join(FIELDS)}"
        )
    return frozenset(chosen)


def check_hops(hops: int, name: str = "hops") -> int:
    """The number of proxies that append to the forwarded lists: an integer from 1 to 32."""
    if isinstance(hops, bool) or not isinstance(hops, int) or not 1 <= hops <= _MAX_HOPS:
        raise ValueError(f"{name}: expected an integer from 1 to {_MAX_HOPS} (proxies in front), got {hops!r}")
    return hops


def _tail_items(text: str) -> list[str]:
    """The right-most comma-separated items of ``text``, at most ``_MAX_HOPS`` within ``_MAX_HEADER_LENGTH``.

    Each proxy appends on the right; only the client writes on the left. Dropping the whole value when
    it is too long would let a client make its request look sent by the trusted proxy itself, so the
    left (client-written) part is what is cut.
    """
    items = text[-_MAX_HEADER_LENGTH:].split(",")
    if len(text) > _MAX_HEADER_LENGTH:
        items = items[1:]  # cut in the middle of a client-written item
    return [item.strip() for item in items[-_MAX_HOPS:]]


def _split_list(raw: list[bytes] | None) -> list[str] | None:
    if not raw:
        return None
    return _tail_items(",".join(value.decode("latin-1") for value in raw)) or None


def _forwarded_elements(text: str) -> list[dict[str, str]]:
    """The elements of a ``Forwarded`` value; a malformed or oversized value is read element by element.

    The elements the proxies append (on the right) have no comma in their values: a comma-separated
    piece that does not parse (written by the client) becomes an empty element, which stops the walk
    from the right like any untrusted hop instead of discarding what the proxies wrote.
    """
    if len(text) <= _MAX_HEADER_LENGTH:
        elements = _parse_forwarded(text)
        if elements is not None:
            return elements
    return [(_parse_forwarded(piece) or [{}])[0] for piece in _tail_items(text)]


class ForwardedHeadersMiddleware:
    """Rewrite scheme, server, Host, root path and client from the headers of a trusted reverse proxy.

    ``headers_type`` picks the one header family that is read: ``"x-forwarded"`` (X-Forwarded-For, -Proto,
    -Host, -Port, -Prefix) or ``"forwarded"`` (RFC 7239 ``Forwarded``, and X-Forwarded-Prefix for the prefix,
    which it lacks); ``"none"`` passes requests through.
    ``trusted_hosts`` are IP addresses or CIDR networks (a list or a comma string); ``"*"`` trusts every peer.
    ``fields`` lists what is applied, out of ``for``, ``proto``, ``host``, ``port`` and ``prefix`` (a list or a
    comma string); ``hops`` is how many proxies in front append to the headers. Both default to the settings
    ``C2C__PROXY_HEADERS__FIELDS`` (``for,proto,host,port``) and ``C2C__PROXY_HEADERS__HOPS`` (1).
    """

    def __init__(
        self,
        app: ASGIApp,
        trusted_hosts: list[str] | str = "127.0.0.1",
        headers_type: HeadersType = "x-forwarded",
        fields: Iterable[str] | str | None = None,
        hops: int | None = None,
    ) -> None:
        if headers_type not in ("x-forwarded", "forwarded", "none"):
            raise ValueError(f"headers_type: expected 'x-forwarded', 'forwarded' or 'none', got {headers_type!r}")
        if fields is None or hops is None:
            proxy_settings = config.settings.proxy_headers
            fields = proxy_settings.fields if fields is None else fields
            hops = proxy_settings.hops if hops is None else hops
        self.app = app
        self.headers_type = headers_type
        self.fields = check_fields(fields)
        self.hops = check_hops(hops)
        self.trusted_hosts = TrustedProxies(trusted_hosts)
        self._trust_all = self.trusted_hosts.trust_all
        self._trusted_peers = self.trusted_hosts.peers
        self._enabled = headers_type != "none"
        # What a request's forwarded headers (and Host, scope type, scheme) imply: memoised, as a proxy sends
        # the same few values again and again. Bounded: hostile values cannot grow it.
        self._rewrites: dict[tuple[Any, ...], _Rewrite | None] = {}
        if headers_type == "forwarded":
            # RFC 7239 carries for, proto and host (with its port); it has no prefix: X-Forwarded-Prefix gives it.
            wanted = {b"forwarded"} if self.fields & {"for", "proto", "host"} else set()
            if "prefix" in self.fields:
                wanted.add(_X_FORWARDED_HEADERS["prefix"])
        else:
            wanted = {header for field, header in _X_FORWARDED_HEADERS.items() if field in self.fields}
        # Name -> whether it is a forwarded header (else Host), for the scan: servers give lowercase names (uvicorn,
        # hypercorn), looked up as they are; another name is lowered only when its length is one of these.
        self._kinds: dict[bytes, bool] = dict.fromkeys(wanted, True)
        self._kinds[b"host"] = False
        self._kind_lengths = frozenset(len(name) for name in self._kinds)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._enabled and scope["type"] in _REWRITTEN_TYPES:
            client: Any = scope.get("client")
            if client:
                peer = client[0]
                try:  # the decision cached by ``in`` for this peer, without a call
                    trusted = self._trust_all or self._trusted_peers[peer]
                except (KeyError, TypeError):
                    trusted = peer in self.trusted_hosts
                if trusted:
                    scope = self._rewrite(scope)
                if type(peer) is str and peer.startswith(_MAPPED_PREFIX):
                    scope = _unmap_peer(scope, client)
        await self.app(scope, receive, send)

    def _rewrite(self, scope: Scope) -> Scope:
        """The scope the application sees: a patched copy, or the same scope when nothing applies."""
        kinds = self._kinds
        lengths = self._kind_lengths
        found: list[tuple[bytes, bytes]] = []
        host: bytes | None = None
        host_index = _NO_HOST  # where the single Host header is, to replace it without a second scan
        index = -1
        for item in scope["headers"]:
            index += 1
            name = item[0]
            forwarded = kinds.get(name)
            if forwarded is None:
                if len(name) not in lengths:
                    continue
                name = name.lower()
                forwarded = kinds.get(name)
                if forwarded is None:
                    continue
            if forwarded:
                found.append((name, item[1]))
            else:
                host = item[1]
                host_index = index if host_index == _NO_HOST else _SEVERAL_HOSTS
        if not found:
            return scope  # one pass over the headers, nothing allocated but an empty list
        scheme = scope.get("scheme", "http")
        key = (*found, scope["type"], scheme, host)
        try:
            rewrite = self._rewrites.get(key, _UNKNOWN)
        except TypeError:  # values given as bytearray or memoryview: normalise to bytes, which hash
            found = [(name, bytes(value)) for name, value in found]
            host = bytes(host) if host is not None else None
            key = (*found, scope["type"], scheme, host)
            rewrite = self._rewrites.get(key, _UNKNOWN)
        if rewrite is _UNKNOWN:
            rewrite = self._plan(found, scope["type"], scheme, host)
            if len(self._rewrites) >= _MAX_CACHED_REWRITES:
                self._rewrites.clear()
            self._rewrites[key] = rewrite
        return scope if rewrite is None else rewrite.apply(scope, host_index)

    def _plan(
        self, found: list[tuple[bytes, bytes]], scope_type: str, scheme: str, host: bytes | None
    ) -> _Rewrite | None:
        """The rewrite that the forwarded headers ``found`` imply; None when they imply nothing."""
        by_name: dict[bytes, list[bytes]] = {}
        for name, value in found:
            by_name.setdefault(name, []).append(bytes(value))
        if self.headers_type == "forwarded":
            hop = self._hop_from_forwarded(by_name)
        else:
            hop = self._hop_from_x_forwarded(by_name)
        if hop == _EMPTY_HOP:
            return None
        return _rewrite_of(hop, scope_type, scheme, bytes(host) if host is not None else None)

    def _client_depth(self, nodes: list[tuple[str, int] | None]) -> int | None:
        """How many places from the right the client's hop is, out of the ``for`` addresses ``nodes``.

        The right-most address that is not a trusted proxy, within ``hops`` places; else the address ``hops``
        places from the right (with ``trusted_hosts="*"`` always that one). None when there are fewer
        addresses than ``hops`` and all are trusted: the left-most may be one the client wrote.
        """
        trusted = self.trusted_hosts
        count = len(nodes)
        for depth in range(1, min(count, self.hops) + 1):
            node = nodes[count - depth]
            if node is None or node[0] not in trusted:
                return depth
        return self.hops if count >= self.hops else None

    def _hop_from_forwarded(self, found: dict[bytes, list[bytes]]) -> _Hop:
        raw = found.get(b"forwarded")
        elements = _forwarded_elements(b",".join(raw).decode("latin-1")) if raw else []
        fields = self.fields
        depth: int | None = self.hops
        if "for" in fields:
            depth = self._client_depth([_parse_node(element.get("for", "")) for element in elements])
        hop = _Hop()
        # X-Forwarded-Prefix (only looked for when ``prefix`` is listed) is read as in x-forwarded mode: from the
        # client's hop, else ``hops`` places from the right.
        prefixes = _split_list(found.get(_X_FORWARDED_HEADERS["prefix"]))
        hop.prefix = _valid_prefix(_pick(prefixes, self.hops if depth is None else depth))
        if depth is None or len(elements) < depth:
            return hop
        element = elements[len(elements) - depth]
        if "for" in fields:
            hop.client = _parse_node(element.get("for", ""))
        if "proto" in fields:
            hop.proto = _valid_proto(element.get("proto"))
        if "host" in fields:
            parsed = _split_host(element.get("host"))
            if parsed is not None:
                hop.host, hop.port = parsed
        return hop

    def _hop_from_x_forwarded(self, found: dict[bytes, list[bytes]]) -> _Hop:
        hop = _Hop()
        depth = self.hops  # places from the right of each list where the client's hop is
        addresses = _split_list(found.get(b"x-forwarded-for"))  # only looked for when ``for`` is listed
        if addresses:
            client_depth = self._client_depth([_parse_node(address) for address in addresses])
            if client_depth is not None:
                depth = client_depth
                hop.client = _parse_node(addresses[len(addresses) - depth])
        hop.proto = _valid_proto(_pick(_split_list(found.get(b"x-forwarded-proto")), depth))
        host = _split_host(_pick(_split_list(found.get(b"x-forwarded-host")), depth))
        if host is not None:
            hop.host, hop.port = host
        if hop.port is None:
            hop.port = _valid_port(_pick(_split_list(found.get(b"x-forwarded-port")), depth))
        hop.prefix = _valid_prefix(_pick(_split_list(found.get(b"x-forwarded-prefix")), depth))
        return hop


def _unmap_peer(scope: Scope, peer: Any) -> Scope:
    """The peer ``::ffff:1.2.3.4`` shown as the IPv4 client it is (logs, ``request.client``), unless rewritten."""
    host, port = peer[0], peer[1]
    if scope.get("client") is not peer:
        return scope  # the forwarded client replaced it, already in IPv4 form
    return {**scope, "client": (plain_address(host), port)}


_REWRITTEN_TYPES = frozenset({"http", "websocket"})
_NO_HOST = -1
_SEVERAL_HOSTS = -2
_UNKNOWN: Any = object()


@dataclass(frozen=True, slots=True)
class _Rewrite:
    """The scope changes a hop implies for one scope type, scheme and Host: computed once, applied many times."""

    values: dict[str, Any]
    host_header: bytes | None
    prefix: str | None

    def apply(self, scope: Scope, host_index: int) -> Scope:
        """A patched copy of ``scope``: outer middlewares keep theirs.

        ``host_index`` is the position of the only Host header, else ``_NO_HOST`` or ``_SEVERAL_HOSTS``.
        """
        scope = {**scope, **self.values}
        if self.host_header is not None:
            headers = scope["headers"]
            if host_index >= 0:  # the usual case: replace it where it is
                headers = list(headers)
                headers[host_index] = (b"host", self.host_header)
            else:
                headers = [(b"host", self.host_header)] + [item for item in headers if item[0].lower() != b"host"]
            scope["headers"] = headers
        if self.prefix:
            # ASGI: path includes root_path; Starlette strips root_path to route and adds it back in url_for.
            scope["root_path"] = self.prefix + scope.get("root_path", "")
            scope["path"] = self.prefix + scope["path"]
            if scope.get("raw_path") is not None:
                scope["raw_path"] = self.prefix.encode("ascii") + bytes(scope["raw_path"])
        return scope


def _rewrite_of(hop: _Hop, scope_type: str, scheme: str, current_host: bytes | None) -> _Rewrite:
    values: dict[str, Any] = {}
    if hop.proto is not None:
        scheme = _WEBSOCKET_SCHEMES[hop.proto] if scope_type == "websocket" else _HTTP_SCHEMES[hop.proto]
        values["scheme"] = scheme
    host = hop.host
    if host is None and hop.port is not None and current_host is not None:
        # Only a port was forwarded: keep the host the proxy passed on.
        parsed = _split_host(current_host.decode("latin-1"))
        host = parsed[0] if parsed is not None else None
    host_header = None
    if host is not None:
        default_port = _DEFAULT_PORTS.get(scheme, 80)
        port = hop.port if hop.port is not None else default_port
        values["server"] = (host, port)
        host_text = f"[{host}]" if ":" in host else host
        host_header = (host_text if port == default_port else f"{host_text}:{port}").encode("ascii")
    if hop.client is not None:
        values["client"] = hop.client
    return _Rewrite(values=values, host_header=host_header, prefix=hop.prefix)
