"""The W3C Trace Context (Level 1) header formats: ``traceparent`` and ``tracestate`` parsed by the spec's rules.

https://www.w3.org/TR/trace-context/ - ``traceparent`` is ``version-trace_id-parent_id-flags`` in lowercase hex:

- version ``ff`` is invalid; a higher version than ``00`` is read from the fields version ``00`` knows (what
  follows them must be the end of the value or a ``-``); version ``00`` has nothing after its flags;
- an all-zero trace id or parent id is invalid;
- several header lines are combined with ``,`` (RFC 9110, section 5.3): two ``traceparent`` lines therefore
  make an invalid value, and the trace restarts, as the spec's test suite expects;
- optional whitespace (space, tab) around the value is allowed; a value longer than 512 characters is refused.

``tracestate`` counts only with a valid ``traceparent``: the combined lines are split on ``,``, empty members are
skipped, and one malformed member, one duplicated key or more than 32 members discard the whole list; so does a
combined value over 8192 characters. These are also the rules of OpenTelemetry's own propagator, which the tests
use as the oracle.
"""

from __future__ import annotations

import re
from typing import NamedTuple

MAX_TRACEPARENT_LENGTH = 512
MAX_TRACESTATE_LENGTH = 8192
MAX_TRACESTATE_MEMBERS = 32
INVALID_VERSION = "ff"
_ZERO_TRACE_ID = "0" * 32
_ZERO_SPAN_ID = "0" * 16

_TRACEPARENT = re.compile(r"[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:(-.*)|[ \t]*)")
# The usual value: exactly the four fields, nothing around them (no optional whitespace or future fields to try).
_EXACT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_EXACT_LENGTH = 55
# key = lcalpha 0*255(lcalpha / DIGIT / "_" / "-" / "*" / "/")
#     / (lcalpha / DIGIT) 0*240(lcalpha / DIGIT / "_" / "-" / "*" / "/") "@" lcalpha 0*13(lcalpha / DIGIT / ...)
# value = 0*255(chr) nblk-chr; nblk-chr = %x21-2B / %x2D-3C / %x3E-7E; chr = %x20 / nblk-chr
_KEY = r"[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13}"
_VALUE = r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
_MEMBER = re.compile(f"({_KEY})=({_VALUE})")


class Traceparent(NamedTuple):
    """The fields of a valid ``traceparent``: the caller's trace, its span (our parent) and its sampled flag."""

    trace_id: str
    parent_id: str
    sampled: bool


def parse_traceparent(value: str) -> Traceparent | None:
    """The fields of a ``traceparent`` value (lines already combined with ``,``), None when it is invalid."""
    fields = traceparent_fields(value)
    return None if fields is None else Traceparent(*fields)


def traceparent_fields(value: str) -> tuple[str, str, bool] | None:
    """(trace id, parent id, sampled) of a ``traceparent`` value, None when it is invalid (the per-request path)."""
    exact = _EXACT.fullmatch(value) if len(value) == _EXACT_LENGTH else None
    if exact is not None:
        version, trace_id, parent_id, flags = exact.groups()
    else:
        if len(value) > MAX_TRACEPARENT_LENGTH:
            return None
        match = _TRACEPARENT.fullmatch(value)
        if match is None:
            return None
        version, trace_id, parent_id, flags, rest = match.groups()
        if version == "00" and rest is not None:
            return None
    if version == INVALID_VERSION or trace_id == _ZERO_TRACE_ID or parent_id == _ZERO_SPAN_ID:
        return None
    # Only the sampled bit has a meaning in Level 1: the other flags are not passed on.
    return trace_id, parent_id, flags[1] in "13579bdf"


def parse_tracestate(lines: list[str]) -> tuple[tuple[str, str], ...] | None:
    """The members (key, value) of the ``tracestate`` lines, in order; None when the list is discarded or empty."""
    if sum(len(line) for line in lines) + len(lines) - 1 > MAX_TRACESTATE_LENGTH:
        return None
    members: dict[str, str] = {}
    for line in lines:
        for item in line.split(","):
            member = item.strip(" \t")
            if not member:
                continue
            match = _MEMBER.fullmatch(member)
            if match is None or match.group(1) in members:
                return None
            members[match.group(1)] = match.group(2)
    if not members or len(members) > MAX_TRACESTATE_MEMBERS:
        return None
    return tuple(members.items())


def format_traceparent(trace_id: str, span_id: str, sampled: bool) -> str:
    """A version ``00`` ``traceparent``: ``span_id`` is the parent of the receiver's span."""
    return f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}"


def format_tracestate(members: tuple[tuple[str, str], ...]) -> str:
    """The ``tracestate`` value of ``members``, as received (without the optional whitespace)."""
    return ",".join(f"{key}={value}" for key, value in members)
