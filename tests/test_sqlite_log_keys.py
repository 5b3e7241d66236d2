"""SQLite indexes 64-bit digests of event ids and idempotency keys (see
``decisiongraph.store.log_keys``); the text decides every outcome.

Here every digest is made to collide, the worst a digest can do: appends,
retries, conflicts and duplicate ids must come out exactly as on a store
whose digests all differ, and the digests of the projections too.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from decisiongraph.core.errors import DUPLICATE_EVENT_ID
from decisiongraph.store.sqlite import SQLiteEventStore
from tests.contract.helpers import envelope, error_of, log_state, workload

T = "default"


@pytest.fixture
def colliding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SQLiteEventStore]:
    """A store on which every event id and every idempotency key has the
    same digest."""
    monkeypatch.setattr("decisiongraph.store.log_keys.event_digest", lambda *parts: 7)
    monkeypatch.setattr("decisiongraph.store.log_keys.idem_digest", lambda *parts: 7)
    store = SQLiteEventStore(tmp_path / "colliding.db")
    try:
        yield store
    finally:
        store.close()


def test_colliding_digests_change_no_outcome(colliding: SQLiteEventStore, tmp_path: Path) -> None:
    events = workload(12, seed=3)
    stored = colliding.append(T, events[:40])
    stored += colliding.append(T, events[40:])
    assert [event.log_seq for event in stored] == list(range(1, len(events) + 1))
    assert not any(event.repeated for event in stored)

    # Retries of stored events, alone and mixed with new ones, are recognised.
    resent = colliding.append(T, events[:10])
    assert [event.log_seq for event in resent] == list(range(1, 11))
    assert all(event.repeated for event in resent)

    # Every digest in the log is the same, yet a changed retry is a conflict...
    before = log_state(colliding, T)
    changed = replace(events[3], payload={**events[3].payload, "note": "changed"})
    assert error_of(lambda: colliding.append(T, [changed])).code == ("DG_ERR_IDEMPOTENCY_CONFLICT")
    # ...and a new event is refused only when its own id is taken.
    taken = envelope("fresh", 0, "TraceStarted", event_id=events[5].event_id)
    error = error_of(lambda: colliding.append(T, [taken]))
    assert (error.code, error.details["reason"]) == ("DG_ERR_STORAGE", DUPLICATE_EVENT_ID)
    twice = [
        envelope("twice", 0, "TraceStarted", event_id="dup"),
        envelope("twice", 1, "InputObserved", event_id="dup"),
    ]
    assert error_of(lambda: colliding.append(T, twice)).details["index"] == 1
    assert log_state(colliding, T) == before
    assert colliding.append(T, [envelope("fresh", 0, "TraceStarted")])[0].log_seq == len(events) + 1
    # Another tenant may reuse ids and keys (their digests collide as well).
    assert colliding.append("tenant_b", events[:5])[-1].log_seq == 5

    # The projections do not depend on the digests.
    colliding.project_pending(T)
    apart = SQLiteEventStore(tmp_path / "apart.db")
    try:
        apart.append(T, events)
        apart.append(T, [envelope("fresh", 0, "TraceStarted")])
        apart.project_pending(T)
        assert apart.digests(T) == colliding.digests(T)
    finally:
        apart.close()


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("event_key", "event_key + 1", "event_key does not match"),
        ("idem_key", "NULL", "idem_key is missing"),
    ],
)
def test_verify_catches_an_edited_digest(
    tmp_path: Path, column: str, value: str, reason: str
) -> None:
    """The chain does not cover the digests, so ``verify`` checks them too:
    with its digest changed, a stored event's retry would be stored again."""
    store = SQLiteEventStore(tmp_path / "dg.db")
    try:
        store.append(T, workload(3, seed=5))
        assert store.verify_chain(T) is None
        raw = sqlite3.connect(tmp_path / "dg.db", isolation_level=None)
        try:
            raw.execute("DROP TRIGGER dg_event_log_no_update")
            raw.execute(f"UPDATE dg_event_log SET {column} = {value} WHERE log_seq = 7")
        finally:
            raw.close()
        problem = store.verify_chain(T)
        assert problem is not None and problem.log_seq == 7
        assert reason in problem.reason
    finally:
        store.close()
