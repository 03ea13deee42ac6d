"""redis_utils._replies: replies as text or bytes, whether redis-py decoded them or not."""

from __future__ import annotations

from c2casgiutils import redis_utils


def test_as_text() -> None:
    assert redis_utils.as_text(b"broadcast_api_chan") == "broadcast_api_chan"
    assert redis_utils.as_text("already text") == "already text"
    assert redis_utils.as_text(6379) == "6379"
    assert redis_utils.as_text(b"bad \xff byte") == "bad \ufffd byte"  # replaced, not an exception


def test_as_bytes() -> None:
    assert redis_utils.as_bytes(b"frame") == b"frame"
    assert redis_utils.as_bytes("chan") == b"chan"
