"""Append semantics (spec 5, 7), written once and run on every backend."""

from __future__ import annotations

from dataclasses import replace

import pytest

from decisiongraph.core.errors import DecisionGraphError
from decisiongraph.core.refs import ActorRef, SourceRef
from decisiongraph.store import EventStore
from tests.contract.helpers import envelope, full_trace

T = "tenant_a"


def codes_of(store: EventStore, tenant: str, envelopes: list) -> str:  # type: ignore[type-arg]
    with pytest.raises(DecisionGraphError) as caught:
        store.append(tenant, envelopes)
    return caught.value.code


def test_log_seq_is_gap_free_per_tenant(store: EventStore) -> None:
    first = store.append(T, full_trace("t1"))
    second = store.append("tenant_b", full_trace("t1"))  # same ids, other tenant
    third = store.append(T, full_trace("t2"))
    assert [e.log_seq for e in first + third] == list(range(1, 21))
    assert [e.log_seq for e in second] == list(range(1, 11))
    assert store.get_last_log_seq(T) == 20 and store.get_last_log_seq("tenant_b") == 10
    assert store.tenants() == ["tenant_a", "tenant_b"]


def test_idempotent_repeat_returns_the_stored_event(store: EventStore) -> None:
    stored = store.append(T, [envelope("t1", 0, "TraceStarted")])[0]
    retry = envelope(
        "t1",
        5,
        "TraceStarted",
        key="TraceStarted:t1:0",
        event_id="another-id",
        occurred_at="2030-01-01T00:00:00Z",
    )
    again = store.append(T, [retry])[0]
    assert again.repeated and not stored.repeated
    assert (again.log_seq, again.event_id, again.trace_seq, again.occurred_at) == (
        stored.log_seq,
        stored.event_id,
        stored.trace_seq,
        stored.occurred_at,
    )
    assert store.get_last_log_seq(T) == 1


@pytest.mark.parametrize(
    "change",
    [
        {
            "payload": {
                "workflow": "other",
                "title": "x",
                "primary_entity": {"entity_type": "a", "entity_id": "b"},
            }
        },
        {"trace_id": "t9"},
        {"source": SourceRef("contract_producer", "other_system")},
        {"source": SourceRef("contract_producer", "tests", "")},
        {"actor": ActorRef("agent", "someone_else")},
        {"correlation_id": "c1"},
        {"causation_event_id": "e0"},
        {"schema_version": 2},
        {"tags": ("x",)},
    ],
)
def test_same_key_different_content_conflicts(store: EventStore, change: dict) -> None:  # type: ignore[type-arg]
    original = envelope("t1", 0, "TraceStarted")
    store.append(T, [original])
    assert codes_of(store, T, [replace(original, **change)]) == "DG_ERR_IDEMPOTENCY_CONFLICT"
    assert store.get_last_log_seq(T) == 1


def test_same_key_under_another_producer_is_another_event(store: EventStore) -> None:
    store.append(T, [envelope("t1", 0, "TraceStarted")])
    other = envelope("t2", 0, "TraceStarted", source=SourceRef("second_producer", "tests"))
    other = replace(other, idempotency_key="TraceStarted:t1:0")
    assert store.append(T, [other])[0].log_seq == 2


@pytest.mark.parametrize(
    ("events", "code"),
    [
        ([("t1", 1, "TraceStarted")], "DG_ERR_EVENT_SEQUENCE_INVALID"),
        ([("t1", 0, "InputObserved")], "DG_ERR_EVENT_SEQUENCE_INVALID"),
        ([("t1", 0, "TraceStarted"), ("t1", 2, "InputObserved")], "DG_ERR_EVENT_SEQUENCE_INVALID"),
        ([("t1", 0, "TraceStarted"), ("t1", 1, "TraceStarted")], "DG_ERR_EVENT_SEQUENCE_INVALID"),
        (
            [("t1", 0, "TraceStarted"), ("t1", 1, "TraceFinished"), ("t1", 2, "InputObserved")],
            "DG_ERR_CONFLICT",
        ),
        (
            [("t1", 0, "TraceStarted"), ("t1", 1, "TraceFinished"), ("t1", 2, "TraceFinished")],
            "DG_ERR_CONFLICT",
        ),
    ],
)
def test_sequencing_and_finished_lock(store: EventStore, events: list, code: str) -> None:  # type: ignore[type-arg]
    *good, bad = events
    for trace, seq, kind in good:
        store.append(T, [envelope(trace, seq, kind)])
    before = store.get_last_log_seq(T)
    assert codes_of(store, T, [envelope(*bad)]) == code
    assert store.get_last_log_seq(T) == before


def test_retry_of_finished_trace_event_returns_it(store: EventStore) -> None:
    stored = store.append(T, full_trace("t1"))
    again = store.append(T, [envelope("t1", 9, "TraceFinished")])[0]
    assert again.repeated and again.log_seq == stored[-1].log_seq
    assert store.is_trace_finished(T, "t1")


def test_duplicate_event_id_is_a_storage_error(store: EventStore) -> None:
    store.append(T, [envelope("t1", 0, "TraceStarted", event_id="same")])
    duplicate = envelope("t2", 0, "TraceStarted", event_id="same")
    with pytest.raises(DecisionGraphError) as caught:
        store.append(T, [duplicate])
    assert caught.value.code == "DG_ERR_STORAGE"
    assert "same" in caught.value.message
    assert store.get_last_log_seq(T) == 1


@pytest.mark.parametrize("bad_index", [0, 4, 9])
def test_batch_is_all_or_nothing(store: EventStore, bad_index: int) -> None:
    store.append(T, [envelope("t0", 0, "TraceStarted")])
    batch = full_trace("t1")
    batch[bad_index] = replace(batch[bad_index], payload={})
    with pytest.raises(DecisionGraphError) as caught:
        store.append(T, batch)
    assert caught.value.details["index"] == bad_index
    assert store.get_last_log_seq(T) == 1
    assert store.get_trace_events(T, "t1") == []
    assert store.verify_chain(T) is None


def test_batch_failing_at_append_time_stores_nothing(store: EventStore) -> None:
    batch = full_trace("t1")
    batch[6] = replace(batch[6], trace_seq=7)  # a hole: found under the append lock
    with pytest.raises(DecisionGraphError) as caught:
        store.append(T, batch)
    assert caught.value.code == "DG_ERR_EVENT_SEQUENCE_INVALID"
    assert caught.value.details["index"] == 6
    assert store.get_last_log_seq(T) == 0


def test_in_batch_repeat_is_idempotent(store: EventStore) -> None:
    first = envelope("t1", 0, "TraceStarted")
    stored = store.append(
        T, [first, replace(first, event_id="retry"), envelope("t1", 1, "InputObserved")]
    )
    assert [e.log_seq for e in stored] == [1, 1, 2]
    assert [e.repeated for e in stored] == [False, True, False]


def test_tenant_isolation_of_reads_and_digests(store: EventStore) -> None:
    store.append(T, full_trace("t1"))
    store.project_pending(T)
    before = store.digests(T)
    store.append("tenant_b", full_trace("t1") + full_trace("t2"))
    store.project_pending("tenant_b")
    assert store.digests(T) == before
    assert store.digests("tenant_b") != before
    assert len(store.list_events(T)) == 10
    assert store.get_trace_events(T, "t2") == []


def test_invalid_tenant_is_refused(store: EventStore) -> None:
    for tenant in ("", "   ", "a\x00b"):
        assert (
            codes_of(store, tenant, [envelope("t1", 0, "TraceStarted")])
            == "DG_ERR_INVALID_ARGUMENT"
        )
