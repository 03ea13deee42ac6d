"""A body-reading, body-replaying ASGI middleware in the style of Chio's ``ChioASGIMiddleware``.

It reads the whole request body, hashes it, publishes the hash in ``request.state`` and in a response header
(Chio's receipt), then replays the same bytes to the application, which must not see an exhausted stream.
"""

from __future__ import annotations

import hashlib

from starlette.types import ASGIApp, Message, Receive, Scope, Send

RECEIPT_HEADER = b"x-body-sha256"


class BodyHashReplayMiddleware:
    """Hash the request body, then replay it; ``scope["state"]`` gets ``body_sha256`` and ``body_chunks``."""

    def __init__(self, app: ASGIApp, max_body_size: int = 16 * 1024 * 1024) -> None:
        self.app = app
        self.max_body_size = max_body_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more_body = True
        while more_body:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left before sending its body: nothing to answer
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_size:
                await send({"type": "http.response.start", "status": 413, "headers": []})
                await send({"type": "http.response.body", "body": b""})
                return
            chunks.append(chunk)
            more_body = message.get("more_body", False)
        body = b"".join(chunks)
        digest = hashlib.sha256(body).hexdigest()
        state = scope.setdefault("state", {})
        state["body_sha256"] = digest
        state["body_chunks"] = len(chunks)
        replayed = False

        async def replay_receive() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for http.disconnect as usual

        async def send_with_receipt(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (RECEIPT_HEADER, digest.encode("ascii"))]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, replay_receive, send_with_receipt)
