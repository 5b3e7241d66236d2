"""Pausing Python's cyclic garbage collector around bulk work.

Folding a batch of thousands of events allocates hundreds of thousands of
short-lived containers (events, payload dicts, rows). None of them form
reference cycles, so reference counting frees them all, yet each 700 net
allocations trigger a collection that walks the young objects: about a
tenth of a catch-up's time went to collections that found nothing.

The pause is process-wide (the collector has one switch), so it nests and
is shared across threads: the collector is switched back on when the last
paused section ends, and only if it was on when the first one began.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """Run the body with the cyclic collector off (reference counting still frees)."""
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
