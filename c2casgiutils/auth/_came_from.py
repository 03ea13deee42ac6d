"""Validation of ``came_from``: after login we only redirect to the same host (no open redirect)."""

from __future__ import annotations

import re
import urllib.parse

from fastapi import HTTPException, Request, status

# Browsers drop tabs and newlines inside URLs ("/\t/evil.example" becomes "//evil.example"), and read
# a backslash as a slash: refuse them all rather than guess how a browser will read the value.
_FORBIDDEN_CHARACTERS = re.compile(r"[\x00-\x20\x7f\\]")


def _refuse(reason: str) -> HTTPException:
    return HTTPException(status.HTTP_400_BAD_REQUEST, detail=f"Invalid 'came_from': {reason}")


def validate_came_from(request: Request, came_from: str | None) -> str | None:
    """``came_from`` if it stays on this host (a path, or an http(s) URL of this host); 400 otherwise."""
    if came_from is None or came_from == "":
        return None
    if _FORBIDDEN_CHARACTERS.search(came_from):
        raise _refuse("it contains spaces, control characters or backslashes")
    try:
        parsed = urllib.parse.urlsplit(came_from)
    except ValueError as error:
        raise _refuse(f"it is not a URL ({error})") from error
    if parsed.scheme:
        if parsed.scheme.lower() not in ("http", "https"):
            raise _refuse(f"the scheme {parsed.scheme!r} is not allowed (only http and https)")
        if not parsed.netloc:
            raise _refuse("an absolute URL needs a host")
        if parsed.netloc.lower() != request.url.netloc.lower():
            raise _refuse(f"it leads to another host ({parsed.netloc!r}); only {request.url.netloc!r} is allowed")
        if request.url.scheme == "https" and parsed.scheme.lower() != "https":
            # Same host over plain HTTP: the page and what it submits would travel in clear.
            raise _refuse("it leaves HTTPS for plain HTTP; use a path or an https URL")
        return came_from
    if parsed.netloc or came_from.startswith("//"):
        raise _refuse("protocol-relative URLs ('//host') lead to other hosts")
    if not came_from.startswith("/"):
        raise _refuse("use an absolute path starting with '/' or a URL of this host")
    return came_from
