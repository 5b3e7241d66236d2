"""Narrow index keys for the SQLite log's two random-order lookups.

An event's id (a client's UUID, as a rule) and its idempotency key land at
random places in their indexes, so every 1,000-event commit rewrote most
leaf pages of both: with the text keys (tenant, event_id) and (tenant,
producer, key), 1,888 index pages for 50,000 events against 440 with 64-bit
digests. The digests fit four times the entries on a page, so an append
writes 40% fewer bytes (WAL and checkpoints) and storing an event costs a
fifth to a third less (``bench/append.py`` prints the split).

The digest columns are unique, so an append stays optimistic: a retry or a
reused id fails the insert, and the append is redone on the exact path,
which compares the text. A digest cannot tell two texts apart, so there a
new row whose digest another text already holds (a collision, about one in
10^19 per pair) is stored with NULL instead, and every lookup also reads
the tenant's NULL rows (none, as a rule). That keeps one invariant: a NULL
digest is always held by another row, so a retry of a NULL row, or a new
event reusing its id, still fails the optimistic insert and takes the exact
path (the upgrade, migration 0010, leaves the first row of a colliding
group its digest for the same reason). PostgreSQL keeps unique text
indexes; digests are SQLite's alone, and no digest enters the hash chain.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from hashlib import blake2b
from typing import Any

from decisiongraph.store.columns import EVENT_COLUMNS

_SEP = "\x1f"  # unit separator: no id holds it next to another part
_TENANT, _EVENT_ID, _PRODUCER, _IDEMPOTENCY = (
    EVENT_COLUMNS.index(name)
    for name in ("tenant_id", "event_id", "producer_id", "idempotency_key")
)


def _digest(text: str) -> int:
    data = text.encode("utf-8", "surrogatepass")
    return int.from_bytes(blake2b(data, digest_size=8).digest(), "big", signed=True)


def event_digest(tenant_id: str, event_id: str) -> int:
    """The indexed digest of an event id within its tenant."""
    return _digest(tenant_id + _SEP + event_id)


def idem_digest(tenant_id: str, producer_id: str, idempotency_key: str) -> int:
    """The indexed digest of a producer's idempotency key within its tenant."""
    return _digest(tenant_id + _SEP + producer_id + _SEP + idempotency_key)


class AppendDigests:
    """The digests of one exact-path append (see :meth:`start`), computed
    once (about a microsecond each): its lookups fill them in, marking as
    None each one that another text holds already, and its insert takes
    them. Outside an append, each digest is simply computed."""

    def __init__(self) -> None:
        self._tenant_id: str | None = None
        self._events: dict[str, int | None] = {}
        self._keys: dict[tuple[str, str], int | None] = {}

    def start(self, tenant_id: str | None) -> None:
        """Begin an exact-path append to ``tenant_id`` (None: end it),
        forgetting what the previous one noted."""
        self._tenant_id = tenant_id
        self._events = {}
        self._keys = {}

    def event(self, tenant_id: str, event_id: str) -> int | None:
        if tenant_id != self._tenant_id:
            return event_digest(tenant_id, event_id)
        if event_id not in self._events:
            self._events[event_id] = event_digest(tenant_id, event_id)
        return self._events[event_id]

    def key(self, tenant_id: str, producer_id: str, idempotency_key: str) -> int | None:
        if tenant_id != self._tenant_id:
            return idem_digest(tenant_id, producer_id, idempotency_key)
        pair = (producer_id, idempotency_key)
        if pair not in self._keys:
            self._keys[pair] = idem_digest(tenant_id, producer_id, idempotency_key)
        return self._keys[pair]

    def held_elsewhere(self, event_ids: Iterable[str], keys: Iterable[tuple[str, str]]) -> None:
        """These ids' and keys' digests belong to other texts: store NULL."""
        for event_id in event_ids:
            self._events[event_id] = None
        for pair in keys:
            self._keys[pair] = None

    def keyed(self, rows: Iterable[Sequence[Any]]) -> list[tuple[Any, ...]]:
        """Rows in EVENT_COLUMNS order with their two digests appended: None
        for one taken before, or by an earlier row's other text (a row that
        repeats an earlier one's id keeps it, for the index to refuse)."""
        events: dict[int, tuple[str, str]] = {}
        keys: dict[int, tuple[str, str, str]] = {}
        out: list[tuple[Any, ...]] = []
        for row in rows:
            tenant_id = row[_TENANT]
            event = self.event(tenant_id, row[_EVENT_ID])
            if event is not None:
                text = (tenant_id, row[_EVENT_ID])
                if events.setdefault(event, text) != text:
                    event = None
            key = self.key(tenant_id, row[_PRODUCER], row[_IDEMPOTENCY])
            if key is not None:
                pair = (tenant_id, row[_PRODUCER], row[_IDEMPOTENCY])
                if keys.setdefault(key, pair) != pair:
                    key = None
            out.append((*row, event, key))
        return out
