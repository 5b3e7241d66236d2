"""Identifier helpers (spec 3.5): random UUID4 ids, no namespace UUIDs.

``uuid.uuid4()`` reads the OS random source once per id and builds a
``uuid.UUID`` object only to print it. Ids are made on every append (and on
an agent's thread by the SDK), so randomness is read 4 KiB at a time and the
string is formatted directly: a third of the cost, and the system call (which
releases the GIL, letting another thread hold the caller up for a switch
interval) happens once per 256 ids. The ids are the same kind: 122 random
bits, version 4, RFC 4122 variant.
"""

from __future__ import annotations

import os
import threading
import uuid

_POOL_BYTES = 4096


class _RandomPool:
    """Bytes from ``os.urandom``, handed out 16 at a time, never twice."""

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


_pool = _RandomPool()


def new_id() -> str:
    """A fresh random (version 4) UUID in its canonical lowercase form."""
    raw = bytearray(_pool.take16())
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def is_valid_uuid(text: str) -> bool:
    """True when the standard UUID parser accepts ``text``."""
    try:
        uuid.UUID(text)
    except (ValueError, AttributeError, TypeError):
        return False
    return True
