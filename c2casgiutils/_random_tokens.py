"""Random tokens as hex digits (CSP nonces, request ids, trace and span ids), drawn from ``os.urandom`` in batches.

One system call per batch instead of one per token: ``uuid.uuid4().hex`` costs about 2.7 µs, a token popped
from a batch about 0.1 µs. ``deque.popleft`` is atomic, so two threads never get the same token; a forked child
drops the batch it inherited so it never hands out its parent's tokens.
"""

from __future__ import annotations

import os
from collections import deque

# RFC 9562: version 4 in the high nibble of byte 6, variant 10 in the top bits of byte 8; as byte tables, so that a
# whole batch is marked by two ``translate`` calls in C (a Python loop over the batch cost more than all the pops).
_UUID4_VERSION = bytes((byte & 0x0F) | 0x40 for byte in range(256))
_UUID4_VARIANT = bytes((byte & 0x3F) | 0x80 for byte in range(256))


class TokenPool:
    """Random tokens of ``size`` bytes as ``2 * size`` hex digits (128 bits, 32 digits by default).

    ``uuid4=True`` makes each one a version 4 UUID (as ``uuid.uuid4().hex``); ``nonzero=True`` never gives the
    all-zero token (invalid as a W3C trace or span id; one in 2**64 for a span id).
    """

    BATCH = 256

    def __init__(self, *, uuid4: bool = False, size: int = 16, nonzero: bool = False) -> None:
        if uuid4 and size != 16:
            raise ValueError("a version 4 UUID has 16 bytes")
        self._uuid4 = uuid4
        self._size = size
        self._zero = "0" * (2 * size) if nonzero else None
        self._tokens: deque[str] = deque()
        self.pop = self._tokens.popleft  # raises IndexError when empty: then call refill_and_pop()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._tokens.clear)

    def refill_and_pop(self) -> str:
        raw = bytearray(os.urandom(self._size * self.BATCH))
        if self._uuid4:  # byte 6 and byte 8 of every token (extended slices)
            raw[6::16] = raw[6::16].translate(_UUID4_VERSION)
            raw[8::16] = raw[8::16].translate(_UUID4_VARIANT)
        tokens = raw.hex(" ", self._size).split(" ")  # cut in C: a Python loop over the batch cost more than a pop
        zero = self._zero
        if zero is not None and zero in tokens:  # one scan in C: the filter runs only when there is one
            tokens = [token for token in tokens if token != zero]
        self._tokens.extend(tokens)
        return self.token()  # a batch of zeros only (never, in practice) draws another

    def token(self) -> str:
        """A fresh token."""
        try:
            return self.pop()
        except IndexError:
            return self.refill_and_pop()
