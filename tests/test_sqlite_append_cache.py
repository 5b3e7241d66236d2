"""The SQLite store remembers heads between its own appends; these tests
make sure that memory never outlives the truth: other connections' commits,
rolled-back appends and idempotent retries all leave the log exact."""

from __future__ import annotations

from pathlib import Path

from decisiongraph.facade import DecisionGraph
from decisiongraph.store.sqlite import SQLiteEventStore
from tests.contract.helpers import code_of, envelope, full_trace, reference_digests

T = "default"


def test_two_connections_interleave_on_one_trace(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    first, second = SQLiteEventStore(path), SQLiteEventStore(path)
    try:
        events = full_trace("t1")
        for index, event in enumerate(events):
            store = first if index % 2 == 0 else second
            stored = store.append(T, [event])
            assert stored[0].log_seq == index + 1 and not stored[0].repeated
        # Each connection sees the other's appends: the next seq and the lock.
        assert first.get_next_trace_seq(T, "t1") == len(events)
        assert second.is_trace_finished(T, "t1") and first.is_trace_finished(T, "t1")
        assert code_of(lambda: first.append(T, [envelope("t1", 9, "InputObserved")])) == (
            "DG_ERR_CONFLICT"
        )
        assert first.verify_chain(T) is None
        assert [e.log_seq for e in second.list_events(T)] == list(range(1, len(events) + 1))
    finally:
        first.close()
        second.close()


def test_rejected_append_leaves_no_trace_in_memory(tmp_path: Path) -> None:
    store = SQLiteEventStore(tmp_path / "one.db")
    try:
        store.append(T, [envelope("t1", 0, "TraceStarted")])
        # A batch that fails on its last event: nothing of it may be remembered.
        bad = [envelope("t1", 1, "InputObserved"), envelope("t1", 5, "InputObserved")]
        assert code_of(lambda: store.append(T, bad)) == "DG_ERR_EVENT_SEQUENCE_INVALID"
        assert store.get_next_trace_seq(T, "t1") == 1
        stored = store.append(T, [envelope("t1", 1, "InputObserved")])
        assert stored[0].log_seq == 2
        assert store.verify_chain(T) is None
    finally:
        store.close()


def test_retries_of_stored_events_take_the_exact_path() -> None:
    with DecisionGraph(":memory:") as dg:
        events = full_trace("t1")
        first = dg.append_events(events)
        # A retry of the whole trace, finished included, returns the stored events.
        again = dg.append_events(events)
        assert [e.log_seq for e in again] == [e.log_seq for e in first]
        assert all(e.repeated for e in again)
        # A stored key on another trace with a valid trace_seq is still a conflict.
        dg.append_events([envelope("t2", 0, "TraceStarted")])
        taken = envelope("t2", 1, "InputObserved", key=events[1].idempotency_key)
        assert code_of(lambda: dg.append_events([taken])) == "DG_ERR_IDEMPOTENCY_CONFLICT"
        assert dg.store.get_last_log_seq(T) == len(events) + 1
        assert dg.store.verify_chain(T) is None
        # What was projected inline along the way equals a rebuild.
        inline = dg.digests()
        assert inline.context_graph == reference_digests(dg.store, T)["context_graph"]
        dg.replay_projections()
        assert dg.digests() == inline


def test_an_append_behind_the_projections_is_written_once(tmp_path: Path) -> None:
    """An append that cannot project inline (the projections are behind) is
    not a failed projection: it commits in one transaction, not two."""
    store = SQLiteEventStore(tmp_path / "behind.db")
    try:
        store.append(T, full_trace("t1"))  # not projected: the projections fall behind
        statements: list[str] = []
        store._conn.set_trace_callback(statements.append)
        stored = store.append(T, full_trace("t2"), project=True, catch_up=False)
        store._conn.set_trace_callback(None)
        assert [event.log_seq for event in stored] == list(range(11, 21))
        assert statements.count("BEGIN IMMEDIATE") == 1
        assert statements.count("ROLLBACK") == 0
        assert store.projection_cursor(T) == 0
    finally:
        store.close()
