"""Remove credentials from payloads: every health payload passes here before it is served or logged."""

from __future__ import annotations

import re
from typing import Any

MASK = "***"

# scheme://user:password@host -> scheme://user:***@host (also inside longer texts such as error messages)
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*:)(?P<password>[^@\s/]+)@")
# libpq-style "password=secret" in DSNs and messages
_KEY_VALUE_PASSWORD = re.compile(r"(?P<head>\b(?:password|passwd|pwd)\s*=\s*)(?P<password>[^\s;,&'\"]+)", re.IGNORECASE)
# payload keys whose value is a secret whatever it looks like
_SECRET_KEY = re.compile(
    r"(?:^|[_\-.])(?:password|passwd|pwd|secret|token|api[_\-]?key|apikey|credentials?|authorization)$",
    re.IGNORECASE,
)


def mask_text(text: str) -> str:
    """The text with passwords of URLs and ``password=...`` pairs replaced by ``***``."""
    if "@" in text:
        text = _URL_PASSWORD.sub(lambda match: match["head"] + MASK + "@", text)
    if "=" in text:
        text = _KEY_VALUE_PASSWORD.sub(lambda match: match["head"] + MASK, text)
    return text


def mask_payload(value: Any) -> Any:
    """A copy of a JSON-like value with credentials masked (keys named like secrets are masked whole)."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        masked: dict[Any, Any] = {}
        for key, item in value.items():
            if isinstance(key, str) and _SECRET_KEY.search(key) and item not in (None, "", MASK):
                masked[key] = MASK
            else:
                masked[key] = mask_payload(item)
        return masked
    if isinstance(value, list | tuple):
        return [mask_payload(item) for item in value]
    return value
