"""broadcast/_signing.py: frames signed with the secret, refused when unsigned or wrongly signed; the replay guard."""

from __future__ import annotations

import time

import pytest

from c2casgiutils.broadcast import _signing


def test_signing_round_trip_and_refusals(settings) -> None:  # type: ignore[no-untyped-def]
    settings.broadcast.secret = None
    unsigned = _signing.sign("chan", b"{}")
    assert _signing.open_frame(b"chan", unsigned) == b"{}"
    settings.broadcast.secret = "k"
    signed = _signing.sign("chan", b"{}")
    assert _signing.open_frame(b"chan", signed) == b"{}"
    with pytest.raises(_signing.SignatureError, match="wrong signature"):
        _signing.open_frame(b"other-chan", signed)  # the channel is signed too
    with pytest.raises(_signing.SignatureError, match="unsigned"):
        _signing.open_frame(b"chan", unsigned)
    with pytest.raises(_signing.SignatureError, match="wrong signature"):
        _signing.open_frame(b"chan", signed[:-1] + b" ")
    guard = _signing.ReplayGuard(max_entries=2)
    guard.check("a", time.time())
    with pytest.raises(_signing.SignatureError, match="replayed"):
        guard.check("a", time.time())
    guard.check("b", time.time())
    guard.check("c", time.time())
    guard.check("a", time.time())  # forgotten: memory is bounded, the timestamp check still applies
    with pytest.raises(_signing.SignatureError, match="away from now"):
        guard.check("d", time.time() + 3600)




def test_a_signer_keeps_the_secret_it_was_built_with(settings) -> None:  # type: ignore[no-untyped-def]
    settings.broadcast.secret = "first"
    signer = _signing.Signer.from_settings()
    guard = _signing.ReplayGuard()
    settings.broadcast.secret = None  # read when built: the backend's signer and guard do not change
    assert signer.signed
    frame = signer.sign("chan", b"{}")
    assert _signing.Signer("first").open(b"chan", frame) == b"{}"
    with pytest.raises(_signing.SignatureError, match="wrong signature"):
        _signing.Signer("second").open(b"chan", frame)
    guard.check("x", time.time())
    with pytest.raises(_signing.SignatureError, match="replayed"):
        guard.check("x", time.time())


def test_without_a_secret_the_replay_guard_refuses_nothing() -> None:
    guard = _signing.ReplayGuard(signed=False, max_age=1)
    for _ in range(2):
        guard.check("same", 0.0)  # no secret: anybody can forge, a replay check would protect nothing
    assert not _signing.Signer(None).signed
    assert _signing.Signer(None).sign("chan", b"{}") == b"- {}"
