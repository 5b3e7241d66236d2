"""Log reads (spec 7.6, 10.1) and exact round trips, on every backend.

Expected results come from the appended list itself (log_seq = position + 1),
so every filter combination is checked against a plain-Python oracle.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from typing import Any

import pytest

from decisiongraph import DecisionGraph
from decisiongraph.core.envelope import EventEnvelope, StoredEvent
from decisiongraph.core.refs import ActorRef, SourceRef
from decisiongraph.query import events as event_queries
from decisiongraph.store import EventStore
from tests.contract.helpers import code_of, envelope, full_trace, interleave, payload_of, trace_of

T = "reads"


def _appended() -> list[EventEnvelope]:
    return interleave(
        full_trace("t1")
        + full_trace("t2", finish=False)
        + trace_of("t3", "TraceStarted", "PolicyEvaluated", "TraceFinished")
    )


@pytest.fixture
def loaded(store: EventStore) -> tuple[EventStore, list[EventEnvelope]]:
    sent = _appended()
    stored = store.append(T, sent)
    assert [e.log_seq for e in stored] == list(range(1, len(sent) + 1))
    return store, sent


def ids(events: list[StoredEvent]) -> list[str]:
    return [e.event_id for e in events]


def test_trace_events_order_since_and_limit(
    loaded: tuple[EventStore, list[EventEnvelope]],
) -> None:
    store, sent = loaded
    assert [e.trace_id for e in sent[:4]] == ["t1", "t2", "t3", "t1"]  # really interleaved
    for trace_id in ("t1", "t2", "t3", "unknown"):
        mine = sorted((e for e in sent if e.trace_id == trace_id), key=lambda e: e.trace_seq)
        for since, limit in itertools.product((None, -1, 0, 2, 8, 9, 20), (None, -1, 0, 1, 3, 100)):
            expected = [e for e in mine if since is None or e.trace_seq > since]
            if limit is not None and limit >= 0:  # a negative limit means none (spec 7.6)
                expected = expected[:limit]
            got = store.get_trace_events(T, trace_id, since_trace_seq=since, limit=limit)
            assert ids(got) == [e.event_id for e in expected], (trace_id, since, limit)
    events = store.get_trace_events(T, "t1")
    assert [e.trace_seq for e in events] == list(range(10))
    assert [e.log_seq for e in events] == sorted(e.log_seq for e in events)


def test_list_events_filters(loaded: tuple[EventStore, list[EventEnvelope]]) -> None:
    store, sent = loaded
    last = len(sent)
    numbered = list(enumerate(sent, start=1))
    for since, until, kind, trace in itertools.product(
        (None, 0, 3, last - 1, last, last + 5),
        (None, 0, 3, 10, last, last + 5),
        (None, "TraceStarted", "PolicyEvaluated", "NoSuchType"),
        (None, "t2", "t3", "zz"),
    ):
        expected = [
            seq
            for seq, e in numbered
            if (since is None or seq > since)
            and (until is None or seq <= until)
            and (kind is None or e.event_type == kind)
            and (trace is None or e.trace_id == trace)
        ]
        got = store.list_events(
            T, since_log_seq=since, until_log_seq=until, event_type=kind, trace_id=trace
        )
        assert [e.log_seq for e in got] == expected, (since, until, kind, trace)
    assert [e.log_seq for e in store.list_events(T, since_log_seq=3, until_log_seq=6)] == [4, 5, 6]
    assert store.list_events(T, since_log_seq=5, until_log_seq=5) == []
    for limit in (0, 1, 5, last, last + 1):
        got = store.list_events(T, since_log_seq=2, limit=limit)
        assert [e.log_seq for e in got] == list(range(3, last + 1))[:limit], limit
    assert len(store.list_events(T, since_log_seq=2, limit=-1)) == last - 2
    two = store.list_events(T, event_type="TraceFinished", trace_id="t3", limit=2)
    assert [(e.trace_id, e.event_type) for e in two] == [("t3", "TraceFinished")]
    assert store.list_events("another_tenant") == []


def test_event_batches_page_through_the_log(
    loaded: tuple[EventStore, list[EventEnvelope]],
) -> None:
    store, sent = loaded
    last = len(sent)
    filters: list[dict[str, Any]] = [
        {},
        {"since_log_seq": 2, "until_log_seq": 9},
        {"until_log_seq": 6},
        {"since_log_seq": last},
        {"event_type": "InputObserved"},
        {"trace_id": "t2", "since_log_seq": 4},
        {"trace_id": "t3", "event_type": "TraceFinished"},
    ]
    for batch_size, where in itertools.product((1, 2, 3, 7, last, 1000), filters):
        pages = list(store.iter_event_batches(T, batch_size=batch_size, **where))
        flat = [e.log_seq for page in pages for e in page]
        assert flat == [e.log_seq for e in store.list_events(T, **where)], (batch_size, where)
        assert all(0 < len(page) <= batch_size for page in pages), (batch_size, where)
    assert [len(p) for p in store.iter_event_batches(T, batch_size=4)] == [4, 4, 4, 4, 4, 2]
    assert list(store.iter_event_batches("empty_tenant", batch_size=3)) == []
    for bad in (0, -1):
        assert code_of(lambda bad=bad: list(store.iter_event_batches(T, batch_size=bad))) == (
            "DG_ERR_INVALID_ARGUMENT"
        )


def test_log_position_helpers(loaded: tuple[EventStore, list[EventEnvelope]]) -> None:
    store, sent = loaded
    assert store.get_last_log_seq(T) == len(sent) == 22
    assert store.get_last_log_seq("nobody") == 0
    assert [store.get_next_trace_seq(T, t) for t in ("t1", "t2", "t3", "new")] == [10, 9, 3, 0]
    assert [store.is_trace_finished(T, t) for t in ("t1", "t2", "t3", "new")] == [
        True,
        False,
        True,
        False,
    ]
    stats = store.log_stats(T)
    assert (stats.event_count, stats.trace_count, stats.last_log_seq) == (22, 3, 22)
    empty = store.log_stats("nobody")
    assert (empty.event_count, empty.trace_count, empty.last_log_seq) == (0, 0, 0)


def _exact(value: Any) -> str:
    """A form that tells 1 from True and int from float."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def test_payloads_tags_and_fields_round_trip_exactly(store: EventStore) -> None:
    nested: dict[str, Any] = {"leaf": ["end", 0, False]}
    for level in range(50):
        nested = {f"level{level}": nested}
    payload = {
        "workflow": 'ünïcödé 😀 \u2028 \u007f \x01 tab\t "quoted" back\\slash /',
        "title": "x" * 100_000,
        "primary_entity": {"entity_type": "a", "entity_id": "b", "system": None},
        "big": 2**80,
        "negative": -(2**70),
        "int64": 2**63 - 1,
        "flags": [True, False, None, 1, 0, "", [], {}],
        "nested": nested,
        "wide": {f"k{i:04d}": i for i in range(1000)},
        "keys": {"": "empty key", "é": 1, "😀": 2, "\uff61": 3, "Z": 4, "a": 5},
    }
    sent = envelope(
        "u",
        0,
        "TraceStarted",
        payload=payload,
        tags=("b", "a", "ü", "", "b", "😀"),
        occurred_at="yesterday at noon, +02:00",  # stored verbatim, never parsed
        source=SourceRef("p", "s", ""),
        actor=ActorRef("person", "ünï"),
        correlation_id="",
        causation_event_id="cause",
        schema_version=7,
    )
    stored = store.append(T, [sent])[0]
    expected_hash = hashlib.sha256(
        json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()
    assert stored.payload_hash == "sha256:" + expected_hash
    reads = [
        store.get_trace_events(T, "u")[0],
        store.list_events(T)[0],
        next(iter(store.iter_event_batches(T)))[0],
    ]
    for read in reads:
        assert read == stored
        assert read.envelope() == sent
        assert _exact(read.payload) == _exact(payload)
        assert read.tags == ("b", "a", "ü", "", "b", "😀")
        assert read.source.subsystem == "" and read.correlation_id == ""
    # Every event type, with None in the optional fields, survives too.
    events = full_trace("v")
    store.append(T, events)
    back = store.get_trace_events(T, "v")
    assert [e.envelope() for e in back] == events
    assert all(e.correlation_id is None and e.source.subsystem is None for e in back)


def test_query_layer_event_reads(loaded: tuple[EventStore, list[EventEnvelope]]) -> None:
    store, sent = loaded
    dg = DecisionGraph(store=store, tenant=T)
    assert [e.trace_seq for e in dg.get_trace_events("t2")] == list(range(9))
    assert [e.trace_seq for e in dg.get_trace_events("t2", since_trace_seq=5, limit=2)] == [6, 7]
    assert len(dg.get_trace_events("t1", limit=10_000)) == 10
    not_found = [
        lambda: dg.get_trace_events("unknown"),
        lambda: dg.get_trace_events("t3", since_trace_seq=2),  # everything filtered out
        lambda: event_queries.get_trace_events(store, T, "t1", since_trace_seq=9),
        lambda: event_queries.get_trace_events(store, "other_tenant", "t1"),
    ]
    for read in not_found:
        assert code_of(read) == "DG_ERR_NOT_FOUND"
    invalid = [
        lambda: dg.get_trace_events("t1", limit=10_001),
        lambda: dg.get_trace_events("t1", limit=0),
        lambda: dg.get_trace_events("t1", since_trace_seq=-1),
        lambda: dg.list_events(since_log_seq=5, until_log_seq=4),
        lambda: dg.list_events(since_log_seq=-1),
        lambda: dg.list_events(until_log_seq=-1),
        lambda: dg.list_events(limit=10_001),
        lambda: dg.list_events(limit=0),
        lambda: event_queries.list_events(store, T, limit=10_001),
    ]
    for read in invalid:
        assert code_of(read) == "DG_ERR_INVALID_ARGUMENT"
    assert [e.log_seq for e in dg.list_events(since_log_seq=4, until_log_seq=4)] == []
    assert [e.log_seq for e in dg.list_events(since_log_seq=3, until_log_seq=5)] == [4, 5]
    assert dg.list_events(event_type="NoSuchType") == []
    started = dg.list_events(event_type="TraceStarted", limit=2)
    assert [e.trace_id for e in started] == ["t1", "t2"]
    assert len(dg.list_events(limit=10_000)) == len(sent)
    assert dg.is_trace_finished("t1") and not dg.is_trace_finished("t2")
    assert payload_of("TraceStarted") == dg.get_trace_events("t1")[0].payload
