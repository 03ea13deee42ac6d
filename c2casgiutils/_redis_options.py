"""Check the Redis settings and turn them into redis-py arguments, without importing redis-py nor ``config``.

The floor of the Redis layer: ``config`` calls it to check the settings (a wrong configuration stops start-up
with a message that names the variable) and ``redis_utils`` to build the clients from them. Messages never
contain a URL beyond its scheme and host, nor an option value.

Rules:

* ``C2C__REDIS__SENTINELS`` is ``host:port,host:port`` (:func:`parse_sentinels`, the one parser of the list) and
  needs ``C2C__REDIS__SERVICENAME``; it excludes ``C2C__REDIS__URL``.
* ``C2C__REDIS__URL`` must be readable as written: an unencoded ``#``, ``/``, ``?`` or ``@`` in the user
  name or password is refused with a hint to percent-encode it (redis-py would otherwise connect to a wrong
  host, or fail with part of the password in its error).
* ``ssl=True`` in ``C2C__REDIS__OPTIONS`` with a ``redis://`` URL connects with TLS (the URL is used as
  ``rediss://``); ``ssl=False`` with ``rediss://`` and ``ssl=True`` with ``unix://`` are refused, as are
  ``ssl_*`` options on a connection without TLS.
* The database: from the URL (path ``/N`` or query ``?db=N``), ``db`` in the options or ``C2C__REDIS__DB``.
  ``C2C__REDIS__DB`` applies when the URL names none; two places naming different databases are refused.
"""

from __future__ import annotations

import urllib.parse
from typing import Any, NamedTuple, Protocol

from c2casgiutils._sensitive import UNPARSABLE_HINT, unparsable_url_reason, url_origin

SCHEMES = ("redis", "rediss", "unix")
URL = "C2C__REDIS__URL"
OPTIONS = "C2C__REDIS__OPTIONS"
SENTINEL_OPTIONS = "C2C__REDIS__SENTINEL_OPTIONS"
SENTINELS = "C2C__REDIS__SENTINELS"
SERVICENAME = "C2C__REDIS__SERVICENAME"
DB = "C2C__REDIS__DB"


class Redis(Protocol):
    """The Redis settings these rules read: ``config.Redis`` (a protocol, so that this module needs no ``config``)."""

    @property
    def url(self) -> str | None: ...
    @property
    def options(self) -> dict[str, Any]: ...
    @property
    def sentinel_options(self) -> dict[str, Any]: ...
    @property
    def sentinels(self) -> str | None: ...
    @property
    def servicename(self) -> str | None: ...
    @property
    def db(self) -> int: ...
    @property
    def model_fields_set(self) -> set[str]: ...


class Connection(NamedTuple):
    """What the clients are built with."""

    url: str | None
    """The URL to pass to ``Redis.from_url`` (None with Sentinel), with ``rediss://`` when ``ssl=True``."""
    options: dict[str, Any]
    """Keyword arguments of the data connections (including ``db``)."""
    sentinel_options: dict[str, Any]
    """Keyword arguments of the connections to the Sentinels themselves."""


def parse_sentinels(value: str) -> list[tuple[str, int]]:
    """Read ``host:port,host:port`` (``[::1]:26379`` for IPv6); ValueError naming the item that is not one."""
    result = []
    for item in value.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"expected 'host:port,host:port', got {item.strip()!r}")
        result.append((host.strip("[]"), int(port)))
    return result


def _check_topology(redis_settings: Redis) -> None:
    """One Redis (a URL) or Sentinel (the Sentinels and the name of the master they monitor), not both."""
    if redis_settings.sentinels and not redis_settings.servicename:
        raise ValueError(
            f"{SENTINELS} is set but {SERVICENAME} is missing: Sentinel needs the name of the monitored master"
        )
    if redis_settings.sentinels and redis_settings.url:
        raise ValueError(
            f"{URL} and {SENTINELS} are both set: set {URL} for one Redis, or "
            f"{SENTINELS} with {SERVICENAME} for Sentinel (the master's password then goes "
            f"in {OPTIONS}, e.g. 'password=...')"
        )


def _db_from_url(url: str, scheme: str, parts: urllib.parse.SplitResult) -> int | None:
    values = urllib.parse.parse_qs(parts.query).get("db")
    query_db: int | None = None
    if values:
        if not values[0].isdigit():
            raise ValueError(f"{URL} ({url_origin(url)}): the query parameter db must be a database number")
        query_db = int(values[0])
    if scheme == "unix":
        return query_db
    path = urllib.parse.unquote(parts.path).strip("/")
    if not path:
        return query_db
    if not path.isdigit():
        raise ValueError(f"{URL} ({url_origin(url)}): the path must be a database number, e.g. /0")
    if query_db is not None and query_db != int(path):
        raise ValueError(f"{URL} ({url_origin(url)}): the path names database {path}, the query db={query_db}")
    return int(path)


def read_url(url: str) -> tuple[str, int | None]:
    """The scheme and the database number (if any) of a Redis URL; ValueError with a safe message."""
    reason = unparsable_url_reason(url)
    if reason is None and "#" in url:
        reason = "it contains a '#'"
    if reason is not None:
        raise ValueError(f"{URL} ({url_origin(url)}) cannot be read as written: {reason}; {UNPARSABLE_HINT}")
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(f"{URL} ({url_origin(url)}): expected a redis://, rediss:// or unix:// URL")
    return scheme, _db_from_url(url, scheme, parts)


def _check_tls_options(options: dict[str, Any], variable: str, tls: bool, fix: str) -> None:
    ssl = options.get("ssl")
    if ssl is not None and not isinstance(ssl, bool):
        raise ValueError(f"{variable}: ssl must be true or false")
    tls_only = sorted(key for key in options if key.startswith("ssl_"))
    if tls_only and not tls:
        raise ValueError(f"{variable}: {', '.join(tls_only)} need a TLS connection: {fix}")


def _one_db(redis_settings: Redis, url_db: int | None, options: dict[str, Any]) -> int:
    """The database, from the only place(s) that name it; refuse places that disagree."""
    named: list[tuple[str, int]] = []
    if url_db is not None:
        named.append((URL, url_db))
    if "db" in options:
        option_db = options.pop("db")
        if isinstance(option_db, bool) or not isinstance(option_db, int) or option_db < 0:
            raise ValueError(f"{OPTIONS}: db must be a database number")
        named.append((f"db in {OPTIONS}", option_db))
    if "db" in redis_settings.model_fields_set:
        named.append((DB, redis_settings.db))
    if len({value for _, value in named}) > 1:
        places = ", ".join(f"{place} names {value}" for place, value in named)
        raise ValueError(f"the Redis database is given in several places that disagree ({places}): keep one")
    return named[0][1] if named else redis_settings.db


def resolve(redis_settings: Redis) -> Connection:
    """Check the settings and give the arguments of the clients; ValueError with a safe message."""
    _check_topology(redis_settings)
    options = dict(redis_settings.options)
    sentinel_options = dict(redis_settings.sentinel_options)
    _check_tls_options(
        sentinel_options,
        SENTINEL_OPTIONS,
        tls=bool(sentinel_options.get("ssl")),
        fix=f"add ssl=True to {SENTINEL_OPTIONS}",
    )
    if redis_settings.sentinels:
        # The data connections of Sentinel take ssl=True as a keyword (there is no URL).
        _check_tls_options(options, OPTIONS, tls=bool(options.get("ssl")), fix=f"add ssl=True to {OPTIONS}")
        options["db"] = _one_db(redis_settings, None, options)
        return Connection(None, options, sentinel_options)
    url = redis_settings.url
    if url is None:
        return Connection(None, options, sentinel_options)
    scheme, url_db = read_url(url)
    ssl = options.get("ssl")
    _check_tls_options(options, OPTIONS, tls=True, fix="")  # type check of ssl only
    options.pop("ssl", None)
    if ssl is True and scheme == "unix":
        raise ValueError(f"{OPTIONS}: ssl=True cannot be used with a unix:// socket ({URL})")
    if ssl is False and scheme == "rediss":
        raise ValueError(f"{OPTIONS}: ssl=False contradicts the rediss:// scheme of {URL}: remove one of them")
    if ssl is True and scheme == "redis":
        url = "rediss://" + url.partition("://")[2]
        scheme = "rediss"
    _check_tls_options(
        options, OPTIONS, tls=scheme == "rediss", fix=f"use a rediss:// URL or add ssl=True to {OPTIONS}"
    )
    db = _one_db(redis_settings, url_db, options)
    if url_db is None:
        options["db"] = db  # from_url lets the URL's own database win; here the URL names none
    return Connection(url, options, sentinel_options)


def secrets(redis_settings: Redis) -> list[str]:
    """Every credential of the Redis settings, to scrub from texts that may contain them (error messages)."""
    found: list[str] = []
    for options in (redis_settings.options, redis_settings.sentinel_options):
        for key, value in options.items():
            if "password" in key.lower() and isinstance(value, str):
                found.append(value)
    url = redis_settings.url
    if url:
        if unparsable_url_reason(url) is None:
            parts = urllib.parse.urlsplit(url)
            if parts.password:
                found += [parts.password, urllib.parse.unquote(parts.password)]
            for name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
                if "password" in name.lower() and value:
                    found.append(value)
        else:
            # Whatever lies between the scheme and the host may be part of a credential.
            rest = url.partition("://")[2]
            user_info = rest.rpartition("@")[0]
            found += [user_info, user_info.partition(":")[2]]
            found += [part for part in user_info.replace("#", ":").replace("/", ":").split(":") if part]
    return found
