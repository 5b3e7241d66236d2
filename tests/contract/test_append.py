"""Append semantics (spec 5, 7, 13), written once and run on every backend.

Idempotency, sequencing, the finished-trace lock, duplicate ids, all-or-nothing
batches and tenancy. Many scenarios share one store by using separate traces
or tenants: tenants are isolated, so this costs nothing in independence.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from decisiongraph import DecisionGraph
from decisiongraph.core.envelope import EventEnvelope
from decisiongraph.core.errors import DecisionGraphError
from decisiongraph.core.refs import ActorRef, SourceRef
from decisiongraph.store import EventStore
from tests.conftest import GOLDEN_SCENARIOS, load_golden
from tests.contract.helpers import (
    code_of,
    envelope,
    error_of,
    full_trace,
    log_state,
    payload_of,
    trace_of,
)

T = "tenant_a"
RECORDED_AT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def independent_hash(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


# -- log_seq ---------------------------------------------------------------------


def test_log_seq_is_gap_free_per_tenant_even_after_failures(store: EventStore) -> None:
    assert store.get_last_log_seq(T) == 0 and store.tenants() == []
    first = store.append(T, full_trace("t1"))
    other = store.append("tenant_b", full_trace("t1"))  # same ids, other tenant
    assert [e.log_seq for e in first] == list(range(1, 11))
    assert [e.log_seq for e in other] == list(range(1, 11))

    # Failed appends of every kind must not consume log_seq values (spec 13:
    # gap-free assignment on every backend).
    failures = [
        [envelope("t2", 0, "TraceStarted", event_id="t1-0")],  # duplicate event_id
        [envelope("t2", 1, "TraceStarted")],  # sequence
        [envelope("t1", 10, "InputObserved")],  # finished trace
        [replace(first[0].envelope(), payload=payload_of("TraceStarted", title="x"))],
        [envelope("t2", 0, "TraceStarted"), envelope("t2", 1, "InputObserved", event_id="t1-3")],
    ]
    for batch in failures:
        code_of(lambda batch=batch: store.append(T, batch))

    single = store.append(T, [envelope("t2", 0, "TraceStarted")])[0]
    rest = store.append(T, full_trace("t2")[1:5])
    assert single.log_seq == 11
    assert [e.log_seq for e in rest] == [12, 13, 14, 15]
    assert [e.log_seq for e in store.list_events(T)] == list(range(1, 16))
    assert store.get_last_log_seq(T) == 15 and store.get_last_log_seq("tenant_b") == 10
    assert store.tenants() == [T, "tenant_b"]


def test_returned_event_carries_the_store_fields(store: EventStore) -> None:
    sent = envelope("t1", 0, "TraceStarted", tags=("b", "a"), correlation_id="c-1")
    stored = store.append(T, [sent])[0]
    assert stored.envelope() == sent
    assert (stored.tenant_id, stored.log_seq, stored.repeated) == (T, 1, False)
    assert stored.payload_hash == independent_hash(sent.payload)
    assert RECORDED_AT.match(stored.recorded_at), stored.recorded_at
    assert store.get_trace_events(T, "t1") == [stored]


# -- idempotency -------------------------------------------------------------------


def test_idempotent_retry_returns_the_stored_event(store: EventStore) -> None:
    stored = store.append(T, full_trace("t1", finish=False)[:4])
    original = stored[1]  # InputObserved at trace_seq 1
    # event_id, trace_seq and occurred_at are not compared (spec 7.3).
    retry = replace(
        original.envelope(),
        event_id="another-id",
        trace_seq=4,
        occurred_at="2030-01-01T00:00:00Z",
    )
    before = log_state(store, T)
    again = store.append(T, [retry])[0]
    assert again.repeated and not original.repeated
    assert again == original  # repeated is excluded from equality
    assert (again.log_seq, again.event_id, again.trace_seq, again.occurred_at) == (
        2,
        "t1-1",
        1,
        original.occurred_at,
    )
    assert (again.recorded_at, again.payload_hash) == (original.recorded_at, original.payload_hash)
    assert log_state(store, T) == before
    # The same retry works again and again, also mixed into a batch.
    mixed = store.append(T, [retry, envelope("t1", 4, "PrecedentCited")])
    assert [(e.log_seq, e.repeated) for e in mixed] == [(2, True), (5, False)]


def test_idempotency_conflicts_name_the_differing_fields(store: EventStore) -> None:
    # A payload valid for two event types, so event_type alone can differ.
    shared = {**payload_of("InputObserved"), **payload_of("EntityObserved")}
    original = envelope(
        "t1",
        1,
        "InputObserved",
        payload=shared,
        key="k1",
        source=SourceRef("producer", "crm", "sub"),
        correlation_id="corr",
        causation_event_id="cause",
        schema_version=2,
        tags=("a", "b"),
    )
    store.append(T, [envelope("t1", 0, "TraceStarted"), original])
    changes: list[tuple[str, dict[str, Any]]] = [
        ("payload", {"payload": {**shared, "extra": 1}}),
        ("payload", {"payload": {**shared, "facts": [1]}}),
        ("trace_id", {"trace_id": "t9"}),
        ("event_type", {"event_type": "EntityObserved"}),
        ("source", {"source": SourceRef("producer", "other", "sub")}),
        ("source", {"source": SourceRef("producer", "crm", None)}),
        ("source", {"source": SourceRef("producer", "crm", "")}),
        ("actor", {"actor": ActorRef("agent", "someone_else")}),
        ("actor", {"actor": ActorRef("person", "contract_bot")}),
        ("correlation_id", {"correlation_id": None}),
        ("correlation_id", {"correlation_id": "corr2"}),
        ("causation_event_id", {"causation_event_id": None}),
        ("causation_event_id", {"causation_event_id": ""}),
        ("schema_version", {"schema_version": 1}),
        ("tags", {"tags": ("b", "a")}),
        ("tags", {"tags": ("a",)}),
        ("tags", {"tags": ("a", "b", "b")}),
        ("tags", {"tags": ()}),
    ]
    before = log_state(store, T)
    for field, change in changes:
        error = error_of(lambda change=change: store.append(T, [replace(original, **change)]))
        assert error.code == "DG_ERR_IDEMPOTENCY_CONFLICT", (field, change, error)
        assert field in error.message, (field, error.message)
        if field != "payload":
            assert error.details["mismatched_fields"] == [field], (change, error.details)
    several = error_of(
        lambda: store.append(
            T, [replace(original, actor=ActorRef("x", "y"), tags=(), schema_version=3)]
        )
    )
    assert several.code == "DG_ERR_IDEMPOTENCY_CONFLICT"
    assert set(several.details["mismatched_fields"]) == {"actor", "schema_version", "tags"}
    assert log_state(store, T) == before
    # Not compared: event_id, trace_seq, occurred_at.
    same = replace(original, event_id="zz", trace_seq=0, occurred_at="later")
    assert store.append(T, [same])[0].repeated


def test_idempotency_scope_is_producer_and_tenant(store: EventStore) -> None:
    first = store.append(T, [envelope("t1", 0, "TraceStarted", key="shared")])[0]
    other_producer = envelope(
        "t2", 0, "TraceStarted", key="shared", source=SourceRef("second_producer", "tests")
    )
    second = store.append(T, [other_producer])[0]
    assert (second.log_seq, second.repeated) == (2, False)
    # Same key, same content, another tenant: a new event there.
    elsewhere = store.append("tenant_b", [envelope("t1", 0, "TraceStarted", key="shared")])[0]
    assert (elsewhere.log_seq, elsewhere.repeated, elsewhere.event_id) == (1, False, "t1-0")
    # And the original producer's retry still finds the original event.
    assert store.append(T, [envelope("t1", 0, "TraceStarted", key="shared")])[0] == first


def test_retry_of_a_finished_trace_returns_the_stored_events(store: EventStore) -> None:
    stored = store.append(T, full_trace("t1"))
    assert store.is_trace_finished(T, "t1")
    before = log_state(store, T)
    for original in (stored[-1], stored[3], stored[0]):
        again = store.append(T, [original.envelope()])[0]
        assert again.repeated and again == original
    # A retry with a later trace_seq (a client that lost the answer) too.
    late = replace(stored[-1].envelope(), trace_seq=10, event_id="new-id")
    assert store.append(T, [late])[0].log_seq == 10
    assert log_state(store, T) == before
    # The lookup comes first, so a differing retry is an idempotency conflict ...
    changed = replace(stored[3].envelope(), payload=payload_of("PolicyEvaluated", decision="x"))
    assert code_of(lambda: store.append(T, [changed])) == "DG_ERR_IDEMPOTENCY_CONFLICT"
    # ... and a genuinely new event is refused by the lock.
    assert code_of(lambda: store.append(T, [envelope("t1", 10, "InputObserved")])) == (
        "DG_ERR_CONFLICT"
    )
    assert log_state(store, T) == before


def test_retries_are_validated_and_compared_by_payload_hash(store: EventStore) -> None:
    payload = payload_of("TraceStarted", n=1, nested={"b": 1, "a": [1, 2]})
    original = store.append(T, [envelope("t1", 0, "TraceStarted", payload=payload)])[0]
    before = log_state(store, T)
    # Validation runs before the idempotency lookup: an invalid retry fails
    # validation, not as a repeat or a conflict.
    invalid = {
        "DG_ERR_PII_POLICY_VIOLATION": {**payload, "note": "Bearer x"},
        "DG_ERR_SCHEMA_VIOLATION": {**payload, "f": 1.0},
        "DG_ERR_INVALID_ARGUMENT": {**payload, "s": {1}},
    }
    for expected, bad in invalid.items():
        retry = replace(original.envelope(), payload=bad)
        assert code_of(lambda retry=retry: store.append(T, [retry])) == expected
    # Payloads are compared by their canonical hash: key order does not
    # matter, but 1 and True differ (although 1 == True in Python).
    reordered = dict(reversed(list(payload.items())))
    reordered["nested"] = {"a": [1, 2], "b": 1}
    assert store.append(T, [replace(original.envelope(), payload=reordered)])[0].repeated
    as_bool = {**payload, "n": True}
    assert as_bool == payload
    assert code_of(lambda: store.append(T, [replace(original.envelope(), payload=as_bool)])) == (
        "DG_ERR_IDEMPOTENCY_CONFLICT"
    )
    assert log_state(store, T) == before


def test_large_batches_cross_lookup_chunks(store: EventStore) -> None:
    """More keys and traces than one lookup round trip handles (hundreds)."""
    starts = [envelope(f"t{i:03d}", 0, "TraceStarted") for i in range(450)]
    store.append(T, starts[:5], project=True)
    finishes = [envelope(f"t{i:03d}", 1, "TraceFinished") for i in range(450)]
    stored = store.append(T, starts + finishes, project=True)
    assert [e.repeated for e in stored] == [True] * 5 + [False] * 445 + [False] * 450
    assert [e.log_seq for e in stored[5:]] == list(range(6, 901))
    again = store.append(T, list(reversed(finishes)))
    assert all(e.repeated for e in again)
    assert store.log_stats(T).trace_count == 450
    assert all(store.is_trace_finished(T, f"t{i:03d}") for i in (0, 399, 400, 449))
    assert store.projection_cursor(T) == 900
    assert {s.event_count for s in store.iter_summaries(T)} == {2}
    late = [envelope(f"t{i:03d}", 2, "InputObserved") for i in range(450)]
    error = error_of(lambda: store.append(T, late))
    assert (error.code, error.details["index"]) == ("DG_ERR_CONFLICT", 0)


# -- sequencing and the finished lock ------------------------------------------------------


def test_sequencing_rules(store: EventStore) -> None:
    store.append(T, trace_of("open", "TraceStarted", "InputObserved", "EntityObserved"))
    before = log_state(store, T)
    cases: list[tuple[str, EventEnvelope, str]] = [
        ("a: new trace must start at 0", envelope("new", 1, "TraceStarted"), "expected 0"),
        ("a: new trace, later seq", envelope("new", 5, "InputObserved"), "expected 0"),
        ("a: negative", envelope("new", -1, "TraceStarted"), "expected 0"),
        ("a: gap", envelope("open", 4, "InputObserved"), "expected 3"),
        ("a: going back", envelope("open", 1, "InputObserved", key="k-back"), "expected 3"),
        ("a: TraceStarted again at 0", envelope("open", 0, "TraceStarted", key="k0"), "expected 3"),
        ("b: TraceStarted not at 0", envelope("open", 3, "TraceStarted"), "tracestarted"),
        ("c: first event not TraceStarted", envelope("new", 0, "InputObserved"), "tracestarted"),
        ("c: TraceFinished first", envelope("new", 0, "TraceFinished"), "tracestarted"),
    ]
    for label, bad, words in cases:
        error = error_of(lambda bad=bad: store.append(T, [bad]))
        assert error.code == "DG_ERR_EVENT_SEQUENCE_INVALID", (label, error)
        assert words in error.message.lower().replace("trace_seq ", ""), (label, error.message)
    assert log_state(store, T) == before
    assert not store.is_trace_finished(T, "new") and store.get_next_trace_seq(T, "new") == 0
    # The correct next events are accepted.
    ok = store.append(
        T, [envelope("open", 3, "PolicyEvaluated"), envelope("new", 0, "TraceStarted")]
    )
    assert [e.log_seq for e in ok] == [4, 5]


def test_finished_trace_is_locked(store: EventStore) -> None:
    store.append(T, trace_of("t1", "TraceStarted", "TraceFinished"))
    before = log_state(store, T)
    refused = [
        envelope("t1", 2, "InputObserved"),
        envelope("t1", 2, "TraceFinished", key="finish-again"),
        envelope("t1", 0, "TraceStarted", key="restart"),  # lock checked before sequence
        envelope("t1", 7, "InputObserved"),  # wrong seq too: still CONFLICT
    ]
    for bad in refused:
        error = error_of(lambda bad=bad: store.append(T, [bad]))
        assert error.code == "DG_ERR_CONFLICT", (bad, error)
    # Inside one batch: the TraceFinished earlier in the batch locks the trace.
    batch = trace_of("t2", "TraceStarted", "TraceFinished", "InputObserved")
    error = error_of(lambda: store.append(T, batch))
    assert (error.code, error.details["index"]) == ("DG_ERR_CONFLICT", 2)
    twice = [*trace_of("t3", "TraceStarted", "TraceFinished"), envelope("t3", 2, "TraceFinished")]
    error = error_of(lambda: store.append(T, twice))
    assert (error.code, error.details["index"]) == ("DG_ERR_CONFLICT", 2)
    assert log_state(store, T) == before
    assert store.is_trace_finished(T, "t1") and not store.is_trace_finished(T, "t2")


def test_duplicate_event_id_is_a_storage_error(store: EventStore) -> None:
    store.append(T, [envelope("t1", 0, "TraceStarted", event_id="same")])
    before = log_state(store, T)
    error = error_of(lambda: store.append(T, [envelope("t2", 0, "TraceStarted", event_id="same")]))
    assert error.code == "DG_ERR_STORAGE" and "same" in error.message
    # Both copies inside one batch: the second one is named.
    batch = [
        envelope("t3", 0, "TraceStarted", event_id="dup"),
        envelope("t3", 1, "InputObserved", event_id="dup"),
    ]
    error = error_of(lambda: store.append(T, batch))
    assert (error.code, error.details["index"]) == ("DG_ERR_STORAGE", 1)
    assert log_state(store, T) == before
    # The same event_id is fine in another tenant, and the log continues gap-free.
    assert store.append("tenant_b", [envelope("t2", 0, "TraceStarted", event_id="same")])
    assert store.append(T, [envelope("t2", 0, "TraceStarted")])[0].log_seq == 2


# -- batches --------------------------------------------------------------------------


def _batch_cases() -> list[tuple[str, int, str, Callable[[list[EventEnvelope]], None]]]:
    """(label, index, code, mutate): mutate breaks the batch at ``index``."""

    def set_at(index: int, **change: Any) -> Callable[[list[EventEnvelope]], None]:
        def mutate(batch: list[EventEnvelope]) -> None:
            batch[index] = replace(batch[index], **change)

        return mutate

    def insert_at(index: int, event: EventEnvelope) -> Callable[[list[EventEnvelope]], None]:
        def mutate(batch: list[EventEnvelope]) -> None:
            batch.insert(index, event)

        return mutate

    bad_title = payload_of("TraceStarted", title="changed")
    return [
        ("schema first", 0, "DG_ERR_SCHEMA_VIOLATION", set_at(0, payload={})),
        ("key middle", 4, "DG_ERR_INVALID_ARGUMENT", set_at(4, idempotency_key="")),
        (
            "pii last",
            9,
            "DG_ERR_PII_POLICY_VIOLATION",
            set_at(9, payload={"outcome": "Bearer x"}),
        ),
        (
            "float",
            5,
            "DG_ERR_SCHEMA_VIOLATION",
            set_at(5, payload={**payload_of("ApprovalRecorded"), "f": 0.5}),
        ),
        ("hole", 6, "DG_ERR_EVENT_SEQUENCE_INVALID", set_at(6, trace_seq=7)),
        ("locked", 10, "DG_ERR_CONFLICT", insert_at(10, envelope("b", 10, "InputObserved"))),
        (
            "conflict with stored",
            3,
            "DG_ERR_IDEMPOTENCY_CONFLICT",
            insert_at(3, envelope("pre", 0, "TraceStarted", payload=bad_title)),
        ),
        (
            "conflict inside batch",
            2,
            "DG_ERR_IDEMPOTENCY_CONFLICT",
            insert_at(2, envelope("b", 0, "TraceStarted", payload=bad_title)),
        ),
        (
            "stored event_id",
            8,
            "DG_ERR_STORAGE",
            set_at(8, event_id="pre-0"),
        ),
        ("invalid trace_seq type", 1, "DG_ERR_INVALID_ARGUMENT", set_at(1, trace_seq="1")),
    ]


def test_batch_append_is_all_or_nothing(store: EventStore) -> None:
    store.append(T, [envelope("pre", 0, "TraceStarted")], project=True)
    before = log_state(store, T)
    digests = store.digests(T)
    for label, index, code, mutate in _batch_cases():
        batch = full_trace("b")
        mutate(batch)
        for project in (False, True):
            error = error_of(
                lambda batch=batch, project=project: store.append(T, batch, project=project)
            )
            assert (error.code, error.details.get("index")) == (code, index), (label, error)
            assert log_state(store, T) == before, label
    assert store.digests(T) == digests
    assert store.get_trace_events(T, "b") == []
    assert store.verify_chain(T) is None
    # The unbroken batch is accepted afterwards, numbered right after the head.
    assert [e.log_seq for e in store.append(T, full_trace("b"))] == list(range(2, 12))


def test_facade_batch_of_dicts_names_the_bad_one(store: EventStore) -> None:
    dg = DecisionGraph(store=store, tenant=T)
    batch = [e.to_dict() for e in full_trace("t1")]
    batch[3]["trace_seq"] = "3"
    error = error_of(lambda: dg.append_events(batch))
    assert error.code == "DG_ERR_INVALID_ARGUMENT"
    assert store.get_last_log_seq(T) == 0
    assert error.details.get("index") == 3


def test_batch_with_in_batch_repeats(store: EventStore) -> None:
    first = envelope("t1", 0, "TraceStarted")
    stored = store.append(
        T,
        [
            first,
            replace(first, event_id="retry", occurred_at="later"),
            envelope("t1", 1, "InputObserved"),
            first,
        ],
    )
    assert [e.log_seq for e in stored] == [1, 1, 2, 1]
    assert [e.repeated for e in stored] == [False, True, False, True]
    assert stored[1].event_id == "t1-0" and stored[1].occurred_at == first.occurred_at
    # A batch mixing stored events and new ones stores only the new ones.
    again = store.append(T, full_trace("t1")[:4])
    assert [(e.log_seq, e.repeated) for e in again] == [
        (1, True),
        (2, True),
        (3, False),
        (4, False),
    ]
    assert store.log_stats(T).event_count == 4


def test_invalid_tenant_is_refused(store: EventStore) -> None:
    for tenant in ("", "   ", "a\x00b", "x" * 201):
        assert code_of(
            lambda tenant=tenant: store.append(tenant, [envelope("t1", 0, "TraceStarted")])
        ) == ("DG_ERR_INVALID_ARGUMENT"), tenant
    assert store.tenants() == []
    assert code_of(lambda: DecisionGraph(store=store, tenant="")) == "DG_ERR_INVALID_ARGUMENT"
    assert store.append("x" * 200, [envelope("t1", 0, "TraceStarted")])[0].log_seq == 1


# -- tenancy --------------------------------------------------------------------------------


def test_tenants_are_isolated(store: EventStore) -> None:
    a = store.append("a", full_trace("t1") + full_trace("t2", finish=False))
    b = store.append("b", full_trace("t2"))
    assert [e.log_seq for e in a] == list(range(1, 20))
    assert [e.log_seq for e in b] == list(range(1, 11))
    assert {e.event_id for e in b[:9]} <= {e.event_id for e in a}  # same event_ids in both
    assert store.is_trace_finished("b", "t2") and not store.is_trace_finished("a", "t2")
    assert store.get_next_trace_seq("a", "t2") == 9 and store.get_next_trace_seq("b", "t2") == 10
    assert store.get_trace_events("b", "t1") == []
    assert [e.log_seq for e in store.get_trace_events("b", "t2")] == list(range(1, 11))
    assert store.list_events("b", event_type="TraceStarted") == [b[0]]
    assert (store.log_stats("a").event_count, store.log_stats("b").trace_count) == (19, 1)
    # Projections and digests are per tenant, with per-tenant cursors.
    store.project_pending("b")
    assert store.projection_cursor("b") == 10 and store.projection_cursor("a") == 0
    assert list(store.iter_nodes("a")) == []
    store.project_pending("a")
    b_digests = store.digests("b")
    store.append("a", [envelope("t2", 9, "TraceFinished")], project=True)
    assert store.digests("b") == b_digests
    assert {s.trace_id for s in store.iter_summaries("b")} == {"t2"}


@pytest.mark.parametrize("scenario", GOLDEN_SCENARIOS)
def test_default_tenant_golden_digests_survive_other_tenants(
    store: EventStore, scenario: str
) -> None:
    events, expected = load_golden(scenario)
    with DecisionGraph(store=store) as default:
        default.append_events(events)
        assert default.tenant == "default"
        assert default.digests().as_dict() == expected
        # Another tenant with the very same events (same ids, keys, traces)
        # gets log_seq 1..n of its own, hence the very same digests ...
        other = default.for_tenant("other")
        stored = other.append_events(events)
        assert [e.log_seq for e in stored] == list(range(1, len(events) + 1))
        assert not any(e.repeated for e in stored)
        assert other.digests().as_dict() == expected
        # ... and its further traffic leaves the default tenant untouched.
        other.store.append("other", full_trace("extra"), project=True)
        assert other.digests().as_dict() != expected
        assert default.digests().as_dict() == expected
        default.replay_projections(batch_size=2)
        assert default.digests().as_dict() == expected
        assert default.get_projection_health().event_count == len(events)


# -- rejected events leave no trace -------------------------------------------------------

REJECTED: dict[str, tuple[str, EventEnvelope]] = {
    "empty key": (
        "DG_ERR_INVALID_ARGUMENT",
        replace(envelope("new", 0, "TraceStarted"), idempotency_key=""),
    ),
    "201-byte key": (
        "DG_ERR_INVALID_ARGUMENT",
        envelope("new", 0, "TraceStarted", key="é" * 100 + "x"),
    ),
    "set in payload": (
        "DG_ERR_INVALID_ARGUMENT",
        envelope("new", 0, "TraceStarted", payload=payload_of("TraceStarted", s={1})),
    ),
    "NUL in payload": (
        "DG_ERR_INVALID_ARGUMENT",
        envelope("new", 0, "TraceStarted", payload=payload_of("TraceStarted", title="a\x00")),
    ),
    "NUL in trace_id": ("DG_ERR_INVALID_ARGUMENT", envelope("new\x00", 0, "TraceStarted")),
    "bool trace_seq": ("DG_ERR_INVALID_ARGUMENT", envelope("new", True, "InputObserved")),
    "string tags": ("DG_ERR_INVALID_ARGUMENT", envelope("new", 0, "TraceStarted", tags="abc")),
    "unknown type": (
        "DG_ERR_SCHEMA_VIOLATION",
        envelope("new", 0, "TraceBegun", payload=payload_of("TraceStarted")),
    ),
    "missing field": (
        "DG_ERR_SCHEMA_VIOLATION",
        envelope("new", 0, "TraceStarted", payload={"workflow": "w"}),
    ),
    "float": (
        "DG_ERR_SCHEMA_VIOLATION",
        envelope("new", 0, "TraceStarted", payload=payload_of("TraceStarted", r=0.0)),
    ),
    "pii": (
        "DG_ERR_PII_POLICY_VIOLATION",
        envelope("new", 0, "TraceStarted", payload=payload_of("TraceStarted", tz="Asia/Tokyo")),
    ),
    "sequence": ("DG_ERR_EVENT_SEQUENCE_INVALID", envelope("open", 5, "InputObserved")),
    "finished": ("DG_ERR_CONFLICT", envelope("done", 2, "InputObserved")),
    "idempotency": (
        "DG_ERR_IDEMPOTENCY_CONFLICT",
        envelope("open", 0, "TraceStarted", payload=payload_of("TraceStarted", title="other")),
    ),
    "duplicate event_id": (
        "DG_ERR_STORAGE",
        envelope("new", 0, "TraceStarted", event_id="done-1"),
    ),
}


STORE_RULES = ("sequence", "finished", "idempotency", "duplicate event_id")


@pytest.mark.parametrize("case", list(REJECTED))
def test_a_rejected_event_stores_nothing(store: EventStore, case: str) -> None:
    expected, bad = REJECTED[case]
    store.append(T, trace_of("done", "TraceStarted", "TraceFinished"), project=True)
    store.append(T, trace_of("open", "TraceStarted"), project=True)
    before = log_state(store, T)
    digests = store.digests(T)
    for project in (False, True):
        assert code_of(lambda project=project: store.append(T, [bad], project=project)) == expected
        assert log_state(store, T) == before
    assert store.digests(T) == digests
    assert store.verify_chain(T) is None
    if case not in STORE_RULES:
        # A tenant's first append failing leaves no tenant behind either.
        assert code_of(lambda: store.append("fresh", [bad])) == expected
        assert store.tenants() == [T]
        assert log_state(store, "fresh")[0:3] == (0, store.log_stats("fresh"), [])
    # The store still takes the next valid event, right after the head.
    assert store.append(T, [envelope("open", 1, "InputObserved")])[0].log_seq == 4


def test_projecting_appends_catch_up_only_when_asked(store: EventStore) -> None:
    """``project`` advances current projections in the append's transaction;
    behind ones are caught up afterwards, unless ``catch_up`` is False (a
    server leaves a backlog to its workers)."""
    store.append(T, full_trace("t1"), project=True)
    assert store.projection_cursor(T) == 10
    store.append(T, full_trace("t2"))  # not projected: the projections fall behind
    stored = store.append(T, full_trace("t3"), project=True, catch_up=False)
    assert stored[-1].log_seq == 30
    assert store.projection_cursors(T) == dict.fromkeys(store.projection_cursors(T), 10)
    store.append(T, full_trace("t4"), project=True)  # the library's default catches up
    assert store.projection_cursors(T) == dict.fromkeys(store.projection_cursors(T), 40)
    # Current again: a projecting append without catch-up still projects inline.
    store.append(T, full_trace("t5"), project=True, catch_up=False)
    assert store.projection_cursor(T) == 50


def block_summaries_of(backend_url: str, trace_id: str) -> None:
    """A trigger that fails the trace-summary insert of one trace."""
    if backend_url.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(backend_url, autocommit=True) as conn:
            conn.execute(
                "CREATE FUNCTION dg_test_block() RETURNS trigger AS $$ BEGIN "
                f"IF NEW.trace_id = '{trace_id}' THEN RAISE EXCEPTION 'blocked by the test'; "
                "END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
            )
            conn.execute(
                "CREATE TRIGGER dg_test_block BEFORE INSERT ON dg_trace_summary "
                "FOR EACH ROW EXECUTE FUNCTION dg_test_block()"
            )
        return
    import sqlite3

    with sqlite3.connect(backend_url) as conn:
        conn.execute(
            "CREATE TRIGGER dg_test_block BEFORE INSERT ON dg_trace_summary "
            f"WHEN NEW.trace_id = '{trace_id}' "
            "BEGIN SELECT RAISE(ABORT, 'blocked by the test'); END"
        )


@pytest.mark.parametrize("batch", [1, 10])
def test_a_failed_inline_projection_leaves_the_append_committed(
    store: EventStore, backend_url: str, batch: int
) -> None:
    """Spec 16.6: a projection failure never fails the append. The inline
    projection of an append alone runs without a savepoint; when it fails,
    the append is redone without it and no projection row of it is kept."""
    store.append(T, full_trace("t1"), project=True)
    block_summaries_of(backend_url, "blocked")
    events = full_trace("blocked")
    stored = []
    for start in range(0, len(events), batch):
        stored += store.append(T, events[start : start + batch], project=True, catch_up=False)
    assert [event.log_seq for event in stored] == list(range(11, 21))
    assert [event.event_id for event in store.list_events(T, since_log_seq=10)] == [
        event.event_id for event in events
    ]
    assert store.projection_cursors(T) == dict.fromkeys(store.projection_cursors(T), 10)
    assert store.get_summary(T, "blocked") is None
    assert not [node for node in store.iter_nodes(T) if node.trace_id == "blocked"]
    with pytest.raises(DecisionGraphError, match="blocked by the test"):
        store.project_pending(T)


def test_backlog_listeners_hear_only_of_appends_left_to_the_workers(store: EventStore) -> None:
    """Workers are woken by appends that left them work; one projected in its
    own transaction leaves none. Append listeners (the live stream) hear of
    every append."""
    heard: dict[str, list[int]] = {"append": [], "backlog": []}
    store.add_append_listener(lambda tenant, seq: heard["append"].append(seq))
    store.add_backlog_listener(lambda tenant, seq: heard["backlog"].append(seq))
    store.append(T, full_trace("t1"), project=True)
    store.append(T, full_trace("t2"))
    store.append(T, full_trace("t3"), project=True)  # behind: caught up after the commit
    assert heard == {"append": [10, 20, 30], "backlog": [20, 30]}
