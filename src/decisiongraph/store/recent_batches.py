"""Decoded log batches shared by the projection workers of one store.

Each (tenant, projection) has its own worker, and in one process they
usually stand at the same cursor: without sharing, each would read and
decode the same events. The log is append-only, so a batch read after a
position stays a correct prefix of what a later read would return; a worker
given a short prefix simply reads on from where it ends. Entries live for a
moment only (and a reset drops them all), and a batch is never served twice
to the same projection: a retry after a failure (say, a payload repaired
behind the store's back) always reads the log again.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from decisiongraph.projections.projected_event import ReplayedEvent

Batch = tuple[list[ReplayedEvent], frozenset[int]]  # events, log_seqs with bad hashes

TTL_SECONDS = 1.0
MAX_ENTRIES = 2  # workers of a tenant stand together; batches are large


class RecentBatches:
    """A few recent ``events after position`` reads, keyed by (tenant, position)."""

    def __init__(self, ttl: float = TTL_SECONDS, max_entries: int = MAX_ENTRIES) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, int], tuple[float, set[str], Batch]] = OrderedDict()

    def get(
        self,
        tenant_id: str,
        after: int,
        limit: int,
        until: int | None,
        consumers: frozenset[str],
    ) -> Batch | None:
        with self._lock:
            entry = self._entries.get((tenant_id, after))
            if entry is None or time.monotonic() - entry[0] > self._ttl:
                return None
            served = entry[1]
            if not served.isdisjoint(consumers):
                return None
            served.update(consumers)
        events, bad = entry[2]
        picked = events[:limit]
        if until is not None:
            picked = [event for event in picked if event.log_seq <= until]
        if not picked:
            return None
        high = picked[-1].log_seq
        return picked, frozenset(seq for seq in bad if seq <= high)

    def put(
        self,
        tenant_id: str,
        after: int,
        events: list[ReplayedEvent],
        bad: frozenset[int],
        consumers: frozenset[str],
    ) -> None:
        if not events:  # "nothing yet" must never be remembered
            return
        with self._lock:
            entry = (time.monotonic(), set(consumers), (events, bad))
            self._entries[(tenant_id, after)] = entry
            self._entries.move_to_end((tenant_id, after))
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
