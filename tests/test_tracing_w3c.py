"""W3C Trace Context conformance of the inbound parser, with OpenTelemetry's own propagator as the oracle.

Every row of a generated table (valid headers and their mutations: versions, ids, flags, separators, extra fields,
whitespace, lengths, several header lines, tracestate members) and random header values are given to
``InboundPolicy.context`` (what ``TraceContextMiddleware`` runs), to ``RequestIdMiddleware`` (which reads them in its
own scan of the headers, beside the request id) and to ``TraceContextTextMapPropagator.extract``; they must agree
on whether the context is kept, its trace id, parent id, sampled flag and tracestate members. The oracle gets the
header lines the way HTTP defines them (RFC 9110, section 5.3: several lines of a field are one comma-joined
value). Values hold only what an HTTP server can pass on in a field value (no CR, LF or NUL).
"""

from __future__ import annotations

import contextlib
import itertools
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from c2casgiutils import request_id
from c2casgiutils.tracing import InboundPolicy, TraceContext, get_trace_context, parse_traceparent, parse_tracestate

ORACLE = TraceContextTextMapPropagator()
POLICY = InboundPolicy("always")
_SEEN: list[TraceContext | None] = []


async def _keep_context(scope: Any, receive: Any, send: Any) -> None:
    _SEEN.append(get_trace_context())


# The shipped path: RequestIdMiddleware reads the trace headers in its own scan of the request headers.
MIDDLEWARE = request_id.RequestIdMiddleware(_keep_context, tracing=True)
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
VALID = f"00-{TRACE_ID}-{PARENT_ID}-01"


def _ours(parents: list[str] | None, states: list[str] | None) -> tuple[Any, ...] | None:
    """What the package keeps, the same through ``TraceContextMiddleware``'s policy and ``RequestIdMiddleware``."""
    headers = [(b"traceparent", line.encode("latin-1")) for line in parents or []]
    headers += [(b"tracestate", line.encode("latin-1")) for line in states or []]
    headers.insert(len(headers) // 2, (b"x-request-id", b"conformance"))
    context = POLICY.context({"type": "http", "headers": headers})
    _SEEN.clear()
    with contextlib.suppress(StopIteration):  # the app awaits nothing: one step runs the whole request
        MIDDLEWARE({"type": "http", "headers": headers}, None, None).send(None)
    (shipped,) = _SEEN
    assert shipped is not None
    decisions = {
        None if found.parent_id is None else (found.trace_id, found.parent_id, found.sampled, found.tracestate or ())
        for found in (context, shipped)
    }
    assert len(decisions) == 1, decisions
    return decisions.pop()  # None: a new trace, the received context was not kept


def _oracle(parents: list[str] | None, states: list[str] | None) -> tuple[Any, ...] | None:
    carrier: dict[str, list[str]] = {}
    if parents:
        carrier["traceparent"] = [",".join(parents)]
    if states:
        carrier["tracestate"] = list(states)
    span_context = trace.get_current_span(ORACLE.extract(carrier)).get_span_context()
    if not span_context.is_valid:
        return None
    state = tuple(span_context.trace_state.items()) if span_context.trace_state else ()
    return (
        f"{span_context.trace_id:032x}",
        f"{span_context.span_id:016x}",
        span_context.trace_flags.sampled,
        state,
    )


def _traceparents() -> list[str]:
    """Valid headers and their mutations, each field and separator in turn."""
    rows = [VALID, f"00-{TRACE_ID}-{PARENT_ID}-00", "", "-", "00", VALID[:-1], VALID + "0", VALID.upper()]
    for version in ("00", "01", "cc", "fe", "ff", "0", "000", "0A", "0a", ".0", "0.", "g0", "  "):
        rows.append(f"{version}-{TRACE_ID}-{PARENT_ID}-01")
        rows.append(f"{version}-{TRACE_ID}-{PARENT_ID}-01-what-the-future-will-be-like")
        rows.append(f"{version}-{TRACE_ID}-{PARENT_ID}-01.what-the-future-will-be-like")
        rows.append(f"{version}-{TRACE_ID}-{PARENT_ID}-01-")
        rows.append(f"{version}-{TRACE_ID}-{PARENT_ID}-01 ")
    bad_trace_ids = ("0" * 32, TRACE_ID.upper(), TRACE_ID[:-1], TRACE_ID + "a", "." + TRACE_ID[1:], TRACE_ID[:-1] + "g")
    for trace_id in bad_trace_ids:
        rows.append(f"00-{trace_id}-{PARENT_ID}-01")
        rows.append(f"cc-{trace_id}-{PARENT_ID}-01-x")
    for parent_id in ("0" * 16, PARENT_ID.upper(), PARENT_ID[:-1], PARENT_ID + "a", "." + PARENT_ID[1:]):
        rows.append(f"00-{TRACE_ID}-{parent_id}-01")
    for flags in ("00", "01", "02", "03", "09", "0f", "10", "11", "fe", "ff", "0", "001", ".0", "0.", "0A", "0x"):
        rows.append(f"00-{TRACE_ID}-{PARENT_ID}-{flags}")
        rows.append(f"cc-{TRACE_ID}-{PARENT_ID}-{flags}-extra")
    for separator in ("_", ".", " ", "--", ""):
        rows.append(f"00{separator}{TRACE_ID}-{PARENT_ID}-01")
        rows.append(f"00-{TRACE_ID}{separator}{PARENT_ID}-01")
        rows.append(f"00-{TRACE_ID}-{PARENT_ID}{separator}01")
    for space in (" ", "\t", " \t", "\t ", "  "):
        rows += [space + VALID, VALID + space, space + VALID + space, f"cc-{TRACE_ID}-{PARENT_ID}-01{space}"]
    rows += [f"cc-{TRACE_ID}-{PARENT_ID}-01-" + "x" * length for length in (400, 456, 457, 458, 600)]
    rows += [VALID + "\x7f", VALID + "\xe9", "\xe9" + VALID[1:], VALID.replace("-", "\u00ad")]
    return rows


def _tracestates() -> list[list[str]]:
    lowercase = "".join(map(chr, range(0x61, 0x7B)))
    printable = "".join(chr(code) for code in range(0x20, 0x7F) if chr(code) not in ",=")
    rows: list[list[str]] = [
        ["foo=1"],
        ["foo=1,bar=2"],
        ["foo=1", "bar=2"],
        ["foo=1,bar=2", "rojo=1,congo=2", "baz=3"],
        [""],
        ["", "foo=1"],
        ["foo=1", ""],
        [",,foo=1,,"],
        ["foo=1 \t , \t bar=2, \t baz=3"],
        [" foo=1", "\tfoo2=1", "foo3=1 ", "foo4=1\t"],
        ["foo=1,foo=1"],
        ["foo=1,foo=2"],
        ["foo=1", "foo=2"],
        ["foo =1"],
        ["foo= 1"],
        ["FOO=1"],
        ["foo.bar=1"],
        ["foo@=1,bar=2"],
        ["@foo=1,bar=2"],
        ["foo@@bar=1,bar=2"],
        ["foo@bar@baz=1,bar=2"],
        ["tenant@vendor=1"],
        ["1tenant@vendor=1"],
        ["1tenant=1"],
        [lowercase + "0123456789_-*/=" + printable.strip()],
        [lowercase + "0123456789_-*/@a-z0-9_-*/=" + printable.strip()],
        ["k=" + printable],
        ["k=a,b"],
        ["k=a=b"],
        ["k="],
        ["k= "],
        ["k=a "],
        ["k=" + "v" * 256],
        ["k=" + "v" * 257],
        ["a" * 256 + "=1"],
        ["a" * 257 + "=1"],
        ["t" * 241 + "@" + "v" * 14 + "=1"],
        ["t" * 242 + "@v=1"],
        ["t@" + "v" * 15 + "=1"],
        ["k=\xe9"],
        ["k=\x7f"],
    ]
    members = [f"k{number}=v{number}" for number in range(40)]
    rows += [[",".join(members[:count])] for count in (31, 32, 33, 40)]
    rows += [members[:32], members[:33], [",".join(members[:16]), ",".join(members[16:33])]]
    rows += [["k=" + "v" * 255] * 1, [",".join(f"k{n}=" + "v" * 250 for n in range(32))]]
    long_line = ",".join(f"k{n}=" + "v" * 255 for n in range(31))
    rows += [[long_line], [long_line[:8192]], [long_line[:8190], "a=b"]]
    return rows


def _table() -> list[tuple[list[str] | None, list[str] | None]]:
    rows: list[tuple[list[str] | None, list[str] | None]] = [(None, None), (None, ["foo=1"])]
    parents = _traceparents()
    rows += [([line], None) for line in parents]
    rows += [([line], ["foo=1,bar=2"]) for line in parents]
    rows += [([VALID], state) for state in _tracestates()]
    rows += [([f"00-{TRACE_ID}-{PARENT_ID}-00"], state) for state in _tracestates()]
    rows += [([f"cc-{TRACE_ID}-{PARENT_ID}-01-x"], state) for state in _tracestates()]
    # Several traceparent lines: one comma-joined value, which no version accepts.
    rows += [([VALID, VALID], None), ([VALID, f"00-{TRACE_ID}-{PARENT_ID}-00"], ["foo=1"])]
    rows += [([f"cc-{TRACE_ID}-{PARENT_ID}-01", VALID], None), (["", VALID], None), ([VALID, ""], None)]
    shuffled = random.Random(23)
    for _ in range(300):  # random combinations of mutated lines
        count = shuffled.choice((1, 1, 1, 2))
        picked = [shuffled.choice(parents) for _ in range(count)]
        states = shuffled.choice(_tracestates())
        rows.append((picked, states))
    return rows


TABLE = _table()


@pytest.mark.parametrize(("parents", "states"), TABLE, ids=[str(number) for number in range(len(TABLE))])
def test_same_decision_as_opentelemetry(parents: list[str] | None, states: list[str] | None) -> None:
    assert _ours(parents, states) == _oracle(parents, states)


def test_the_table_covers_both_outcomes() -> None:
    """The table is no use if every row is refused (or kept): count both, and both tracestate outcomes."""
    outcomes = [_oracle(parents, states) for parents, states in TABLE]
    kept = [outcome for outcome in outcomes if outcome is not None]
    assert len(kept) > 150
    assert len(outcomes) - len(kept) > 150
    assert sum(1 for outcome in kept if outcome[3]) > 50
    assert sum(1 for outcome in kept if not outcome[3]) > 50
    assert {outcome[2] for outcome in kept} == {True, False}


# What an HTTP server passes on in a field value: visible ASCII, space, tab and obs-text (no CR, LF, NUL).
FIELD_CHARACTERS = st.sampled_from([*"0123456789abcdef-", *"ABCDEFgxz.,=@ \t", "\x7f", "\xe9"])
HEX_LINE = st.builds(
    lambda version, trace_id, parent_id, flags, rest: f"{version}-{trace_id}-{parent_id}-{flags}{rest}",
    st.sampled_from(["00", "01", "cc", "ff", "fe", "0", "0A"]),
    st.text("0123456789abcdef", min_size=31, max_size=33) | st.just("0" * 32),
    st.text("0123456789abcdef", min_size=15, max_size=17) | st.just("0" * 16),
    st.text("0123456789abcdefA.", min_size=1, max_size=3),
    st.text(FIELD_CHARACTERS, max_size=6),
)
STATE_LINE = st.lists(
    st.builds(
        lambda key, value: f"{key}={value}",
        st.text("abcz09_-*/@A ", min_size=0, max_size=6),
        st.text("az09 ,=!~\t\xe9", min_size=0, max_size=6),
    ),
    max_size=5,
).map(",".join)


@hypothesis_settings(max_examples=400, deadline=None)
@given(
    parents=st.none() | st.lists(HEX_LINE | st.text(FIELD_CHARACTERS, max_size=60), min_size=1, max_size=2),
    states=st.none() | st.lists(STATE_LINE, min_size=1, max_size=3),
)
def test_random_headers_same_decision_as_opentelemetry(parents: list[str] | None, states: list[str] | None) -> None:
    assert _ours(parents, states) == _oracle(parents, states)


def test_parser_fields() -> None:
    parsed = parse_traceparent(f"cc-{TRACE_ID}-{PARENT_ID}-03-future")
    assert parsed is not None
    assert (parsed.trace_id, parsed.parent_id, parsed.sampled) == (TRACE_ID, PARENT_ID, True)
    assert parse_tracestate(["a=1, b=2", "c=3"]) == (("a", "1"), ("b", "2"), ("c", "3"))
    assert parse_tracestate([""]) is None
    assert list(itertools.islice(iter(TABLE), 1)) == [(None, None)]
