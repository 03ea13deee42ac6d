"""``lifecycle.DrainMiddleware``: ``Connection: close`` on the answers of a draining process, nothing else."""

from __future__ import annotations

from typing import Any

from c2casgiutils.lifecycle import DrainMiddleware
from c2casgiutils.lifecycle._drain import ProcessDrain


def _app(headers: list[tuple[bytes, bytes]], drain: ProcessDrain | None = None, flip: bool = False) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await send({"type": f"{scope['type']}.seen"})
            return
        if flip and drain is not None:
            drain.draining = True  # SIGTERM came while the request was in flight
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


async def _call(app: Any, scope_type: str = "http") -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": scope_type, "path": "/", "headers": []}, receive, send)
    return sent


async def test_not_draining_leaves_the_answer_alone() -> None:
    drain = ProcessDrain()
    headers = [(b"content-type", b"text/plain"), (b"connection", b"keep-alive")]
    sent = await _call(DrainMiddleware(_app(headers), drain=drain))
    assert sent[0]["headers"] == headers
    assert sent[1] == {"type": "http.response.body", "body": b"ok"}


async def test_draining_answers_say_connection_close_once() -> None:
    drain = ProcessDrain()
    drain.draining = True
    sent = await _call(DrainMiddleware(_app([(b"content-type", b"text/plain"), (b"Connection", b"keep-alive")]), drain))
    assert sent[0]["headers"] == [(b"content-type", b"text/plain"), (b"connection", b"close")]
    assert sent[0]["status"] == 200


async def test_a_request_in_flight_when_the_drain_starts_closes_too() -> None:
    drain = ProcessDrain()
    sent = await _call(DrainMiddleware(_app([], drain, flip=True), drain))
    assert sent[0]["headers"] == [(b"connection", b"close")]


async def test_other_scopes_pass_through() -> None:
    drain = ProcessDrain()
    drain.draining = True
    for scope_type in ("websocket", "lifespan"):
        assert await _call(DrainMiddleware(_app([]), drain), scope_type) == [{"type": f"{scope_type}.seen"}]
