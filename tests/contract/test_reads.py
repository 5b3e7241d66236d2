"""Log reads (spec 7.6) and exact round trips, on every backend."""

from __future__ import annotations

import pytest

from decisiongraph.core.errors import DecisionGraphError
from decisiongraph.store import EventStore
from tests.contract.helpers import envelope, full_trace

T = "reads"


@pytest.fixture
def loaded(store: EventStore) -> EventStore:
    store.append(T, full_trace("t1") + full_trace("t2", finish=False))
    return store


def test_trace_events_order_since_and_limit(loaded: EventStore) -> None:
    events = loaded.get_trace_events(T, "t1")
    assert [e.trace_seq for e in events] == list(range(10))
    assert [e.trace_seq for e in loaded.get_trace_events(T, "t1", since_trace_seq=6)] == [7, 8, 9]
    assert [e.trace_seq for e in loaded.get_trace_events(T, "t1", since_trace_seq=2, limit=2)] == [
        3,
        4,
    ]
    assert loaded.get_trace_events(T, "missing") == []


def test_list_events_filters(loaded: EventStore) -> None:
    assert [e.log_seq for e in loaded.list_events(T, since_log_seq=3, until_log_seq=6)] == [4, 5, 6]
    started = loaded.list_events(T, event_type="TraceStarted")
    assert [e.trace_id for e in started] == ["t1", "t2"]
    assert [e.log_seq for e in loaded.list_events(T, trace_id="t2", limit=2)] == [11, 12]


def test_batches_page_through_the_log(loaded: EventStore) -> None:
    pages = list(loaded.iter_event_batches(T, batch_size=4))
    assert [len(p) for p in pages] == [4, 4, 4, 4, 3]
    assert [e.log_seq for p in pages for e in p] == list(range(1, 20))
    assert [
        len(p) for p in loaded.iter_event_batches(T, since_log_seq=2, until_log_seq=9, batch_size=3)
    ] == [3, 3, 1]
    with pytest.raises(DecisionGraphError) as caught:
        list(loaded.iter_event_batches(T, batch_size=0))
    assert caught.value.code == "DG_ERR_INVALID_ARGUMENT"


def test_trace_helpers(loaded: EventStore) -> None:
    assert loaded.get_next_trace_seq(T, "t1") == 10
    assert loaded.get_next_trace_seq(T, "t2") == 9
    assert loaded.get_next_trace_seq(T, "new") == 0
    assert loaded.is_trace_finished(T, "t1") and not loaded.is_trace_finished(T, "t2")
    stats = loaded.log_stats(T)
    assert (stats.event_count, stats.trace_count, stats.last_log_seq) == (19, 2, 19)


def test_payloads_and_tags_round_trip_exactly(store: EventStore) -> None:
    nested: dict = {"leaf": "end"}  # type: ignore[type-arg]
    for level in range(50):
        nested = {f"level{level}": nested}
    payload = {
        "workflow": "ünïcödé 😀 \u2028 \u007f",
        "title": "x" * 100_000,
        "primary_entity": {"entity_type": "a", "entity_id": "b"},
        "big": 2**80,
        "negative": -(2**70),
        "flags": [True, False, None],
        "nested": nested,
        "wide": {f"k{i:04d}": i for i in range(1000)},
    }
    stored = store.append(
        T, [envelope("u", 0, "TraceStarted", payload=payload, tags=("b", "a", "ü"))]
    )[0]
    read = store.get_trace_events(T, "u")[0]
    assert read.payload == payload
    assert read.tags == ("b", "a", "ü")
    assert read.payload_hash == stored.payload_hash
