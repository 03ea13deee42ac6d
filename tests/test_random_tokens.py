"""_random_tokens: random hex tokens from batches of os.urandom (request ids, CSP nonces, trace and span ids)."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator

import pytest

from c2casgiutils import _random_tokens
from c2casgiutils._random_tokens import TokenPool
from c2casgiutils.tracing import new_span_id, new_trace_id


def _popped(pool: TokenPool, count: int) -> list[str]:
    return [pool.token() for _ in range(count)]


@pytest.mark.parametrize("size", [8, 16])
def test_tokens_are_distinct_hex_of_the_size_asked(size: int) -> None:
    tokens = _popped(TokenPool(size=size), 3 * TokenPool.BATCH)  # three batches
    assert all(re.fullmatch(f"[0-9a-f]{{{2 * size}}}", token) for token in tokens)
    assert len(set(tokens)) == len(tokens)


def test_uuid4_tokens_are_version_4_uuids() -> None:
    for token in _popped(TokenPool(uuid4=True), 300):
        parsed = uuid.UUID(hex=token)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
    with pytest.raises(ValueError, match="16 bytes"):
        TokenPool(uuid4=True, size=8)


def test_uuid4_tokens_are_the_random_bytes_with_the_version_and_variant_bits_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = bytes(range(256)) * 16  # every byte value at every position of a token
    monkeypatch.setattr(_random_tokens.os, "urandom", lambda size: raw[:size])
    tokens = _popped(TokenPool(uuid4=True), TokenPool.BATCH)
    expected = [uuid.UUID(bytes=raw[start : start + 16], version=4).hex for start in range(0, 16 * TokenPool.BATCH, 16)]
    assert tokens == expected


def test_nonzero_pool_skips_the_all_zero_token(monkeypatch: pytest.MonkeyPatch) -> None:
    batches: Iterator[bytes] = iter([bytes(8 * TokenPool.BATCH), b"\x00" * 8 + b"\x01" * 8 * (TokenPool.BATCH - 1)])
    monkeypatch.setattr(_random_tokens.os, "urandom", lambda size: next(batches))
    pool = TokenPool(size=8, nonzero=True)
    # A batch of zeros only is dropped whole, then the zero token of the next one.
    assert _popped(pool, TokenPool.BATCH - 1) == ["01" * 8] * (TokenPool.BATCH - 1)


def test_a_forked_child_never_hands_out_its_parents_tokens() -> None:
    pools = {"request id": TokenPool(uuid4=True), "span id": TokenPool(size=8, nonzero=True)}
    for pool in pools.values():
        pool.token()  # the parent holds a batch
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: writes its next token of each pool, and leaves at once
        try:
            os.write(write_end, " ".join(pool.token() for pool in pools.values()).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        child = pipe.read().split()
    os.waitpid(pid, 0)
    parent = [pool.token() for pool in pools.values()]
    assert len(child) == 2
    assert all(token not in parent for token in child)


def test_trace_and_span_ids() -> None:
    trace_ids = {new_trace_id() for _ in range(600)}
    span_ids = {new_span_id() for _ in range(600)}
    assert len(trace_ids) == len(span_ids) == 600
    assert all(re.fullmatch("[0-9a-f]{32}", trace_id) and trace_id != "0" * 32 for trace_id in trace_ids)
    assert all(re.fullmatch("[0-9a-f]{16}", span_id) and span_id != "0" * 16 for span_id in span_ids)
