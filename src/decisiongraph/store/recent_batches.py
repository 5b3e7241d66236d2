"""Decoded log batches shared by the projection workers of one store.

Each (tenant, projection) has its own worker, and in one process they
usually stand at the same cursor: without sharing, each would read and
decode the same events. The log is append-only, so a batch read after a
position stays a correct prefix of what a later read would return; a worker
given a short prefix simply reads on from where it ends. Entries live for a
moment only (and a reset drops them all), and a position is never served
twice to the same projection: a retry after a failure (say, a payload
repaired behind the store's back) always reads the log again.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from decisiongraph.projections.projected_event import ReplayedEvent

Batch = tuple[list[ReplayedEvent], frozenset[int]]  # events, log_seqs with bad hashes

TTL_SECONDS = 1.0
WAIT_SECONDS = 5.0  # for another worker's read of the same position
MAX_ENTRIES = 8  # a few batches per tenant: workers drift apart under load


class _Entry:
    __slots__ = ("after", "bad", "born", "events", "served")

    def __init__(self, after: int, events: list[ReplayedEvent], bad: frozenset[int]) -> None:
        self.born = time.monotonic()
        self.after = after
        self.events = events
        self.bad = bad
        self.served: set[tuple[str, int]] = set()  # (consumer, position) pairs


class RecentBatches:
    """A few recent ``events after position`` reads, keyed by (tenant, position).

    A read at any position inside a remembered batch is served from it (log
    positions are gap-free per tenant), so workers that drifted apart still
    share; each (consumer, position) is served once, so a retry reads afresh.
    """

    def __init__(self, ttl: float = TTL_SECONDS, max_entries: int = MAX_ENTRIES) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, int], _Entry] = OrderedDict()
        self._reading: dict[tuple[str, int], threading.Event] = {}

    def fetch(
        self,
        tenant_id: str,
        after: int,
        limit: int,
        until: int | None,
        consumers: frozenset[str],
        read: Callable[[], Batch],
    ) -> Batch:
        """The batch after ``after``: shared, or ``read()`` and remembered.

        Workers woken by one append all ask at once; while one reads a
        position the others wait for its batch (a bounded while) rather than
        each reading and decoding it too.
        """
        key = (tenant_id, after)
        for _ in range(2):
            shared = self.get(tenant_id, after, limit, until, consumers)
            if shared is not None:
                return shared
            with self._lock:
                pending = self._reading.get(key)
                if pending is None:
                    pending = self._reading[key] = threading.Event()
                    break
            pending.wait(WAIT_SECONDS)
        else:
            return self._read_and_put(tenant_id, after, consumers, read)
        try:
            return self._read_and_put(tenant_id, after, consumers, read)
        finally:
            with self._lock:
                del self._reading[key]
            pending.set()

    def _read_and_put(
        self, tenant_id: str, after: int, consumers: frozenset[str], read: Callable[[], Batch]
    ) -> Batch:
        events, bad = read()
        self.put(tenant_id, after, events, bad, consumers)
        return events, bad

    def get(
        self,
        tenant_id: str,
        after: int,
        limit: int,
        until: int | None,
        consumers: frozenset[str],
    ) -> Batch | None:
        with self._lock:
            entry = self._covering(tenant_id, after)
            if entry is None:
                return None
            asked = {(consumer, after) for consumer in consumers}
            if not entry.served.isdisjoint(asked):
                return None
            entry.served.update(asked)
        offset = after - entry.after
        picked = entry.events[offset : offset + limit]
        if until is not None:
            picked = [event for event in picked if event.log_seq <= until]
        if not picked:
            return None
        high = picked[-1].log_seq
        return picked, frozenset(seq for seq in entry.bad if after < seq <= high)

    def _covering(self, tenant_id: str, after: int) -> _Entry | None:
        """The newest live entry of the tenant holding the event after ``after``."""
        now = time.monotonic()
        for (tenant, start), entry in reversed(self._entries.items()):
            if tenant != tenant_id or now - entry.born > self._ttl:
                continue
            offset = after - start
            if 0 <= offset < len(entry.events) and entry.events[offset].log_seq == after + 1:
                return entry
        return None

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
        entry = _Entry(after, events, bad)
        entry.served.update((consumer, after) for consumer in consumers)
        with self._lock:
            self._entries[(tenant_id, after)] = entry
            self._entries.move_to_end((tenant_id, after))
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
