"""Event ids for the agent's thread: UUID4 strings from pooled randomness.

``uuid.uuid4()`` reads the OS random source per id; that system call
releases the GIL, and a background thread (the batcher's) may then hold the
agent up for a whole switch interval. Reading 4 KiB at a time makes that
happen once per 256 ids, and formatting the string directly skips the
``uuid.UUID`` object. The ids are the same kind: 122 random bits, version 4,
RFC 4122 variant.
"""

from __future__ import annotations

import os
import threading

_POOL_BYTES = 4096


class _Pool:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buffer = b""
        self._position = _POOL_BYTES
        self._pid = os.getpid()

    def take16(self) -> bytes:
        with self._lock:
            if self._position >= len(self._buffer) or self._pid != os.getpid():
                # (a forked child must never repeat its parent's ids)
                self._buffer, self._position, self._pid = os.urandom(_POOL_BYTES), 0, os.getpid()
            start = self._position
            self._position = start + 16
            return self._buffer[start : start + 16]


_pool = _Pool()


def new_uuid4() -> str:
    """A random (version 4) UUID in its canonical lowercase form."""
    raw = bytearray(_pool.take16())
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
