"""What counts as a credential in headers, query strings and log lines, and how it is masked."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable

MASK = "*****"
# Headers whose value is a credential: shown masked, never echoed.
MASKED_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization", "x-api-key", "set-cookie"})
# Any header or query parameter whose name contains one of these words is masked too (X-Auth-Token,
# X-Amz-Security-Token, ?secret=, ?access_token=...): better a masked harmless value than an echoed key.
_SENSITIVE_WORDS = ("auth", "cookie", "token", "secret", "password", "passwd", "api-key", "apikey", "api_key")


def is_sensitive(name: str) -> bool:
    """Whether a header or query parameter of this name carries a credential (its value is masked)."""
    lowered = name.lower()
    return lowered in MASKED_HEADERS or any(word in lowered for word in _SENSITIVE_WORDS)


def mask_query(query: str) -> str:
    """The query string with the values of credential-like parameters replaced by the mask."""
    if not query:
        return query
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    if not any(is_sensitive(name) for name, _ in pairs):
        return query
    return urllib.parse.urlencode([(name, MASK if is_sensitive(name) else value) for name, value in pairs], safe="*")


def mask_path_with_query(text: str) -> str:
    """``/path?secret=x&a=1`` -> ``/path?secret=*****&a=1``; text without a query is returned as is."""
    path, separator, query = text.partition("?")
    if not separator:
        return text
    return f"{path}?{mask_query(query)}"


# --------------------------------------------------------------------------------------------------
# Redis URLs: the one masking function used in every log line, error message and payload
# --------------------------------------------------------------------------------------------------

URL_MASK = "***"
UNPARSABLE_HINT = (
    "an unencoded '#', '/', '?' or '@' in the user name or password cuts the URL: percent-encode them "
    "(%23, %2F, %3F, %40), e.g. with urllib.parse.quote(password, safe='')"
)
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
_HOST_RE = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._\-]+)(?::\d+)?")


def url_origin(url: str) -> str:
    """``scheme://host:port`` of a URL, even a broken one, and nothing else of it (never its credentials).

    The host is the text after the last ``@`` before any ``?``; it is shown only when it looks like a host
    name or an address, so a password cut by an unencoded character never shows up as a host.
    """
    scheme, separator, rest = url.partition("://")
    if not separator or not _SCHEME_RE.fullmatch(scheme):
        return "<unparsable URL>"
    authority = rest.partition("?")[0]
    at = authority.rfind("@")
    host = (rest[at + 1 :] if at >= 0 else rest).split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if not host or not _HOST_RE.fullmatch(host):
        return f"{scheme.lower()}://<host hidden>"
    return f"{scheme.lower()}://{host}"


def unparsable_url_reason(url: str) -> str | None:
    """Why a URL cannot be read as written (an unencoded character in its credentials), or None if it can."""
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port  # a port that is not a number (the start of a password cut by '#', '/' or '?')
    except ValueError:
        return "the text after the host is not a port number"
    if "@" in parts.path or "@" in parts.fragment:
        return "an '@' follows the host"
    return None


def mask_url(url: str) -> str:
    """The URL with the password of its user-info and its credential-like query values replaced by ``***``.

    ``redis://app:pw@host:6379/0`` -> ``redis://app:***@host:6379/0``;
    ``redis://host/0?username=app&password=pw`` -> ``redis://host/0?username=app&password=***``.
    A URL that cannot be read as written gives only its scheme and host (:func:`url_origin`); a fragment
    is masked whole.
    """
    if unparsable_url_reason(url) is not None:
        origin = url_origin(url)
        return origin if origin.startswith("<") else f"{origin} (unparsable URL)"
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user = parts.netloc.rpartition("@")[0].partition(":")[0]
        netloc = f"{user}:{URL_MASK}@{parts.netloc.rpartition('@')[2]}"
    query = parts.query
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        if any(is_sensitive(name) for name, _ in pairs):
            query = "&".join(
                f"{urllib.parse.quote(name, safe='')}="
                f"{URL_MASK if is_sensitive(name) else urllib.parse.quote(value, safe='')}"
                for name, value in pairs
            )
    # A fragment may be the tail of a password or query value cut by an unencoded '#': never shown.
    # (built by hand: urlunsplit would drop the '//' of unix:///path)
    if "://" in url:
        text = f"{parts.scheme}://{netloc}{parts.path}"
    else:
        text = urllib.parse.urlunsplit(parts._replace(query="", fragment=""))
    if query:
        text += f"?{query}"
    return f"{text}#{URL_MASK}" if parts.fragment else text


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """The text with every occurrence of the given secret values (and their percent-encoded forms) masked."""
    for secret in sorted({secret for secret in secrets if secret and len(secret) >= 3}, key=len, reverse=True):
        for form in {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}:
            text = text.replace(form, URL_MASK)
    return text
