"""What counts as a credential in headers, query strings and log lines, and how it is masked."""

from __future__ import annotations

import urllib.parse

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
