"""Projections (spec 8) and their digests (spec 9), on every backend.

Incremental catch-up in any batch size, inline projection on append and a
full rebuild must give identical rows and digests; digests are also
recomputed here from the rows by an independent implementation.
"""

from __future__ import annotations

import pytest

from decisiongraph import DecisionGraph
from decisiongraph.core.envelope import EventEnvelope, envelope_from_dict
from decisiongraph.projections.digests import EMPTY_DIGESTS
from decisiongraph.projections.rows import EdgeRow, NodeRow, PrecedentRow, TraceSummaryRow
from decisiongraph.store import EventStore
from tests.conftest import GOLDEN_SCENARIOS, load_golden
from tests.contract.helpers import (
    code_of,
    envelope,
    full_trace,
    interleave,
    payload_of,
    projection_rows,
    reference_digests,
    trace_of,
    workload,
)

BATCH_SIZES = (1, 2, 3, 7, 1000)


def at(seq: int) -> str:
    return f"2026-01-01T00:00:{seq:02d}Z"


@pytest.mark.parametrize("scenario", GOLDEN_SCENARIOS)
def test_golden_incremental_equals_rebuild(store: EventStore, scenario: str) -> None:
    raw, expected = load_golden(scenario)
    events = [envelope_from_dict(e) for e in raw]
    results = {}
    for size in BATCH_SIZES:
        tenant = f"bs{size}"
        store.append(tenant, events)
        assert store.project_pending(tenant, batch_size=size) == len(events)
        assert store.digests(tenant).as_dict() == expected, size
        results[size] = projection_rows(store, tenant)
    for event in events:  # inline, one event per append
        store.append("inline", [event], project=True)
    results[0] = projection_rows(store, "inline")
    assert store.digests("inline").as_dict() == expected
    assert all(rows == results[1] for rows in results.values())
    store.reset_projections("bs3")
    assert projection_rows(store, "bs3") == ([], [], [], [])
    assert store.digests("bs3") == EMPTY_DIGESTS
    store.project_pending("bs3", batch_size=4)
    assert projection_rows(store, "bs3") == results[1]
    assert reference_digests(store, "bs3") == expected


def test_workload_incremental_equals_rebuild(store: EventStore) -> None:
    events = workload(14, seed=5)
    assert events[0].trace_id != events[1].trace_id  # traces overlap in the log
    store.append("full", events)
    store.project_pending("full", batch_size=5000)
    baseline = projection_rows(store, "full")
    digests = store.digests("full")
    assert reference_digests(store, "full") == digests.as_dict()
    nodes, edges, summaries, precedents = baseline
    assert len(summaries) == 14 and all(s.event_count == 2 for s in summaries)
    assert precedents and len(edges) > len(nodes) > 14

    for size in BATCH_SIZES:
        tenant = f"bs{size}"
        store.append(tenant, events)
        assert store.project_pending(tenant, batch_size=size) == len(events)
        assert projection_rows(store, tenant) == baseline, size
        assert store.digests(tenant) == digests
    # Appends and catch-ups alternating: the cursor stops in the middle of
    # traces and of a batch of the log.
    for size in (2, 5):
        tenant = f"steps{size}"
        for start in range(0, len(events), 11):
            store.append(tenant, events[start : start + 11])
            store.project_pending(tenant, batch_size=size)
        assert store.projection_cursor(tenant) == len(events)
        assert projection_rows(store, tenant) == baseline, size
    # Inline projection with batches of varying sizes.
    start = 0
    for size in (1, 4, 9, 2, 17, 5, 40, 3, 1000):
        store.append("inline", events[start : start + size], project=True)
        start += size
    assert store.projection_cursor("inline") == len(events)
    assert projection_rows(store, "inline") == baseline
    # Full rebuild of the first tenant.
    store.reset_projections("full")
    assert store.projection_cursor("full") == 0
    assert store.project_pending("full", batch_size=6) == len(events)
    assert projection_rows(store, "full") == baseline
    assert store.digests("full") == digests


def test_inline_projection_equals_later_catch_up(store: EventStore) -> None:
    events = workload(6, seed=11)
    for event in events:
        store.append("inline", [event], project=True)
        assert store.projection_cursor("inline") == store.get_last_log_seq("inline")
    store.append("later", events)
    assert store.projection_cursor("later") == 0
    assert projection_rows(store, "later") == ([], [], [], [])
    store.project_pending("later")
    assert projection_rows(store, "inline") == projection_rows(store, "later")
    baseline = projection_rows(store, "later")
    # project=True while projections lag behind: catches up everything.
    half = len(events) // 2
    store.append("behind", events[:half])
    store.append("behind", events[half:], project=True)
    assert store.projection_cursor("behind") == len(events)
    assert projection_rows(store, "behind") == baseline
    # Repeats (idempotent retries) project nothing twice.
    again = store.append("inline", events, project=True)
    assert all(e.repeated for e in again)
    assert projection_rows(store, "inline") == baseline
    # And the facade projects on append by default.
    dg = DecisionGraph(store=store, tenant="facade")
    dg.append_events(events[:10])
    dg.append_events(events[10:])
    assert projection_rows(store, "facade") == baseline
    assert not dg.get_projection_health().is_stale


def test_graph_summary_and_precedent_rows_of_every_event_type(store: EventStore) -> None:
    store.append("t", full_trace("t1"), project=True)
    nodes, edges, summaries, precedents = projection_rows(store, "t")
    assert nodes == sorted(
        [
            NodeRow("trace:t1", "trace", "t1", 1, at(0)),
            NodeRow("actor:agent:contract_bot", "actor", "t1", 1, at(0)),
            NodeRow("entity:account:acme", "entity", "t1", 1, at(0)),
            NodeRow("input:deal_size", "input", "t1", 2, at(1)),
            NodeRow("policy:cap:1", "policy", "t1", 4, at(3)),
            NodeRow("exception:ex1", "exception", "t1", 5, at(4)),
            NodeRow("actor:person:vp", "actor", "t1", 6, at(5)),
            NodeRow("trace:older", "trace", "older", 7, at(6)),  # placeholder
            NodeRow("action:act1", "action", "t1", 8, at(7)),
            NodeRow("entity:deal:d1", "entity", "t1", 8, at(7)),  # placeholder
        ]
    )

    def edge(kind: str, src: str, dst: str, seq: int) -> EdgeRow:
        return EdgeRow(f"{kind}:{src}:{dst}:t1-{seq}", kind, src, dst, "t1", seq + 1, at(seq))

    assert edges == sorted(
        [
            edge("trace_involves_entity", "trace:t1", "entity:account:acme", 0),
            edge("trace_observed_input", "trace:t1", "input:deal_size", 1),
            edge("trace_involves_entity", "trace:t1", "entity:account:acme", 2),
            edge("trace_evaluated_policy", "trace:t1", "policy:cap:1", 3),
            edge("trace_requested_exception", "trace:t1", "exception:ex1", 4),
            edge("exception_approved_by", "exception:ex1", "actor:person:vp", 5),
            edge("trace_cited_precedent", "trace:t1", "trace:older", 6),
            edge("trace_proposed_action", "trace:t1", "action:act1", 7),
            edge("action_targets_entity", "action:act1", "entity:deal:d1", 7),
            edge("trace_committed_action", "trace:t1", "action:act1", 8),
        ]
    )
    assert summaries == [
        TraceSummaryRow(
            "t1", "deal_approval", "Discount", "account", "acme", "success", at(0), at(9), 2, 10
        )
    ]
    assert precedents == [
        PrecedentRow("t1-3", 4, "t1", "cap", "1", None, "account", "crm", "acme"),
        PrecedentRow("t1-4", 5, "t1", "cap", "1", "ex1", "account", "crm", "acme"),
    ]


def test_emission_details(store: EventStore) -> None:
    """Identifiers are used verbatim; only exception subjects link approvals."""
    events = trace_of(
        "t:x",
        (
            "TraceStarted",
            payload_of(
                "TraceStarted", primary_entity={"entity_type": "opp", "entity_id": "sf:opp:1"}
            ),
        ),
        ("InputObserved", payload_of("InputObserved", input_id="input:deal")),
        (
            "ApprovalRecorded",
            payload_of(
                "ApprovalRecorded", subject={"subject_type": "action", "subject_id": "act1"}
            ),
        ),
        (
            "ApprovalRecorded",
            payload_of(
                "ApprovalRecorded",
                subject={"subject_type": "Exception", "subject_id": "ex1"},
                approver={"actor_type": "role", "actor_id": "cfo"},
            ),
        ),
        (
            "PolicyEvaluated",
            payload_of("PolicyEvaluated", policy={"policy_id": "p:1", "policy_version": "2.0"}),
        ),
    )
    store.append("t", events, project=True)
    nodes = {n.node_id: n for n in store.iter_nodes("t")}
    edges = [e.edge_id for e in store.iter_edges("t")]
    assert set(nodes) == {
        "trace:t:x",
        "actor:agent:contract_bot",
        "entity:opp:sf:opp:1",
        "input:input:deal",
        "actor:person:vp",
        "actor:role:cfo",
        "policy:p:1:2.0",
    }
    assert nodes["trace:t:x"].node_type == "trace" and nodes["trace:t:x"].trace_id == "t:x"
    assert edges == sorted(
        [
            "trace_involves_entity:trace:t:x:entity:opp:sf:opp:1:t:x-0",
            "trace_observed_input:trace:t:x:input:input:deal:t:x-1",
            "trace_evaluated_policy:trace:t:x:policy:p:1:2.0:t:x-4",
        ]
    )


def test_placeholders(store: EventStore) -> None:
    a = trace_of(
        "a",
        "TraceStarted",
        ("PrecedentCited", payload_of("PrecedentCited", cited_trace_id="b")),
        ("PrecedentCited", payload_of("PrecedentCited", cited_trace_id="never")),
        ("ActionCommitted", payload_of("ActionCommitted", action_id="ghost")),
        (
            "ApprovalRecorded",
            payload_of(
                "ApprovalRecorded", subject={"subject_type": "exception", "subject_id": "unasked"}
            ),
        ),
        "TraceFinished",
    )
    b = trace_of("b", "TraceStarted", "TraceFinished")
    b = [envelope("b", e.trace_seq, e.event_type, occurred_at="b-time") for e in b]
    for size in (1, 1000):
        tenant = f"bs{size}"
        store.append(tenant, a + b)
        store.project_pending(tenant, batch_size=size)
        nodes = {n.node_id: n for n in store.iter_nodes(tenant)}
        # Cited traces: node_type trace, trace_id = the cited id, the cite's position.
        assert nodes["trace:b"] == NodeRow("trace:b", "trace", "b", 2, at(1))  # not overwritten
        assert nodes["trace:never"] == NodeRow("trace:never", "trace", "never", 3, at(2))
        # Other placeholders carry the edge's trace.
        assert nodes["action:ghost"] == NodeRow("action:ghost", "action", "a", 4, at(3))
        assert nodes["exception:unasked"] == NodeRow(
            "exception:unasked", "exception", "a", 5, at(4)
        )
        edges = {e.edge_type: e for e in store.iter_edges(tenant)}
        assert edges["exception_approved_by"].from_node_id == "exception:unasked"
        assert edges["trace_committed_action"].to_node_id == "action:ghost"
        summary = store.get_summary(tenant, "b")
        assert summary is not None and summary.started_at == "b-time"
        assert store.get_summary(tenant, "never") is None
    assert projection_rows(store, "bs1") == projection_rows(store, "bs1000")

    raw, _ = load_golden("dealdesk")
    store.append("dealdesk", [envelope_from_dict(e) for e in raw], project=True)
    nodes = {n.node_id: n for n in store.iter_nodes("dealdesk")}
    cited = "eeeeeeee-eeee-eeee-eeee-eeeeeeeeeeee"
    assert nodes[f"trace:{cited}"] == NodeRow(
        f"trace:{cited}", "trace", cited, 6, raw[5]["occurred_at"]
    )
    action = nodes["action:act:apply_healthcare_discount"]
    assert (action.node_type, action.trace_id, action.log_seq) == ("action", raw[0]["trace_id"], 8)


def test_first_writer_wins_for_shared_nodes(store: EventStore) -> None:
    raw, expected = load_golden("renewal")
    store.append("renewal", [envelope_from_dict(e) for e in raw], project=True)
    assert store.digests("renewal").as_dict() == expected
    entity = "entity:account:sf:acct:001"
    assert store.get_nodes("renewal", [entity]) == [
        NodeRow(entity, "entity", raw[0]["trace_id"], 1, raw[0]["occurred_at"])
    ]
    involving = [e for e in store.iter_edges("renewal") if e.to_node_id == entity]
    assert sorted(e.log_seq for e in involving) == [1, 2]

    # Across traces and projection batches: t2 shares t1's entity, actor and
    # policy, and really observes the entity t1 only targeted (a placeholder).
    observe_deal = payload_of("EntityObserved", entity={"entity_type": "deal", "entity_id": "d1"})
    t2 = full_trace("t2")
    t2[2] = envelope("t2", 2, "EntityObserved", payload=observe_deal)
    for size in (1, 1000):
        tenant = f"bs{size}"
        store.append(tenant, full_trace("t1") + t2)
        store.project_pending(tenant, batch_size=size)
        nodes = {n.node_id: n for n in store.iter_nodes(tenant)}
        assert nodes["entity:account:acme"] == NodeRow(
            "entity:account:acme", "entity", "t1", 1, at(0)
        )
        assert nodes["actor:agent:contract_bot"].trace_id == "t1"
        assert nodes["policy:cap:1"].log_seq == 4
        assert nodes["entity:deal:d1"] == NodeRow("entity:deal:d1", "entity", "t1", 8, at(7))
        t2_edges = [e for e in store.iter_edges(tenant) if e.trace_id == "t2"]
        assert len(t2_edges) == 10 and all(e.log_seq > 10 for e in t2_edges)
    assert projection_rows(store, "bs1") == projection_rows(store, "bs1000")


def test_summary_quirk_and_precedents_only_for_finished_traces(store: EventStore) -> None:
    no_system = payload_of(
        "TraceStarted", primary_entity={"entity_type": "ticket", "entity_id": "z1"}
    )
    open_trace = trace_of(
        "open",
        ("TraceStarted", no_system),
        "PolicyEvaluated",
        "ExceptionRequested",
        "InputObserved",
        "PrecedentCited",
    )
    done = trace_of(
        "done",
        "TraceStarted",
        (
            "PolicyEvaluated",
            payload_of("PolicyEvaluated", policy={"policy_id": "p", "policy_version": "9"}),
        ),
        "PrecedentCited",
        ("TraceFinished", {"outcome": "approved"}),  # any non-empty outcome is accepted
    )
    events = interleave(open_trace + done)
    stored = {(e.trace_id, e.trace_seq): e.log_seq for e in store.append("t", events, project=True)}
    summaries = {s.trace_id: s for s in store.iter_summaries("t")}
    assert summaries["open"] == TraceSummaryRow(
        "open",
        "deal_approval",
        "Discount",
        "ticket",
        "z1",
        None,
        at(0),
        None,
        1,
        stored[("open", 0)],
    )
    assert summaries["done"].event_count == 2
    assert summaries["done"].last_log_seq == stored[("done", 3)]
    assert (summaries["done"].outcome, summaries["done"].finished_at) == ("approved", at(3))
    assert list(store.iter_precedents("t")) == [
        PrecedentRow(
            "done-1", stored[("done", 1)], "done", "p", "9", None, "account", "crm", "acme"
        )
    ]
    # Finishing the open trace (in its own later batch) indexes it, reading
    # its earlier events back from the log.
    store.append("t", [envelope("open", 5, "TraceFinished")], project=True)
    assert {p.source_event_id: p for p in store.iter_precedents("t")}["open-2"] == PrecedentRow(
        "open-2", stored[("open", 2)], "open", "cap", "1", "ex1", "ticket", None, "z1"
    )
    assert [p.source_event_id for p in store.iter_precedents("t")] == [
        "done-1",
        "open-1",
        "open-2",
    ]
    summary = store.get_summary("t", "open")
    assert summary is not None
    assert (summary.event_count, summary.last_log_seq, summary.outcome) == (
        2,
        store.get_last_log_seq("t"),
        "success",
    )


def test_project_pending_controls_and_reset(store: EventStore) -> None:
    assert store.digests("t") == EMPTY_DIGESTS
    assert store.project_pending("t") == 0
    events: list[EventEnvelope] = full_trace("t1") + full_trace("t2")
    store.append("t", events)
    for bad in (0, -5):
        assert code_of(lambda bad=bad: store.project_pending("t", batch_size=bad)) == (
            "DG_ERR_INVALID_ARGUMENT"
        )
    assert store.project_pending("t", until_log_seq=3) == 3
    assert store.projection_cursor("t") == 3
    assert store.project_pending("t", batch_size=2, max_batches=2) == 4
    assert store.projection_cursor("t") == 7
    assert store.project_pending("t", batch_size=4) == 13
    assert store.projection_cursor("t") == 20 and store.project_pending("t") == 0
    full = store.digests("t")
    assert full == store.digests("t") and full.as_dict() == reference_digests(store, "t")
    for bad_names in (["nope"], []):
        assert code_of(lambda names=bad_names: store.reset_projections("t", names)) == (
            "DG_ERR_INVALID_ARGUMENT"
        )
    store.reset_projections("t")
    assert store.projection_cursor("t") == 0 and store.digests("t") == EMPTY_DIGESTS
    assert store.get_last_log_seq("t") == 20  # the log is untouched
    dg = DecisionGraph(store=store, tenant="t")
    assert dg.get_projection_health().pending_events == 20
    for bad in (0, -1):
        assert code_of(lambda bad=bad: dg.sync_projections(batch_size=bad)) == (
            "DG_ERR_INVALID_ARGUMENT"
        )
        assert code_of(lambda bad=bad: dg.replay_projections(batch_size=bad)) == (
            "DG_ERR_INVALID_ARGUMENT"
        )
    assert dg.sync_projections(batch_size=3) == 20
    assert dg.digests() == full
    dg.replay_projections(batch_size=1)
    assert dg.digests() == full


def test_digests_sort_by_code_point(store: EventStore) -> None:
    """Ids that sort differently under a linguistic collation or UTF-16."""
    names = ["B", "a", "é", "e", "Z", "😀", "\uff61", "_x", "-x", "a b", "A", "ab", "a-b"]
    events = []
    for index, name in enumerate(names):
        start = payload_of("TraceStarted", primary_entity={"entity_type": "k", "entity_id": name})
        events += [
            envelope(name, 0, "TraceStarted", payload=start, event_id=f"{name}#{index}"),
            envelope(name, 1, "TraceFinished", event_id=f"{index}#{name}"),
        ]
    store.append("t", events, project=True)
    nodes = [n.node_id for n in store.iter_nodes("t")]
    assert nodes == sorted(nodes) and "entity:k:😀" in nodes
    summaries = [s.trace_id for s in store.iter_summaries("t")]
    assert summaries == sorted(names)
    assert store.digests("t").as_dict() == reference_digests(store, "t")


def test_projections_caught_up_or_rebuilt_separately(store: EventStore) -> None:
    """Each projection has its own cursor; any mix of catch-ups converges."""
    events = workload(6, seed=2)
    store.append("base", events, project=True)
    baseline = projection_rows(store, "base")
    store.append("t", events)
    assert store.project_pending("t", projections=["trace_summary"], batch_size=7) == len(events)
    cursors = store.projection_cursors("t")
    assert cursors["trace_summary"] == len(events)
    assert cursors["context_graph"] == cursors["precedent_index"] == 0
    assert store.projection_cursor("t") == 0
    nodes, edges, summaries, precedents = projection_rows(store, "t")
    assert (nodes, edges, precedents) == ([], [], []) and summaries == baseline[2]
    store.project_pending("t", projections=["context_graph"], until_log_seq=20)
    assert store.projection_cursors("t")["context_graph"] == 20
    # The rest in one pass: projections at different cursors each resume at their own.
    store.project_pending("t", batch_size=9)
    assert set(store.projection_cursors("t").values()) == {len(events)}
    assert projection_rows(store, "t") == baseline
    # Rebuilding one projection leaves the others alone.
    store.reset_projections("t", ["context_graph"])
    assert store.projection_cursors("t")["context_graph"] == 0
    assert projection_rows(store, "t")[2:] == baseline[2:]
    assert code_of(lambda: store.project_pending("t", projections=["nope"])) == (
        "DG_ERR_INVALID_ARGUMENT"
    )
    store.project_pending("t", batch_size=4)
    assert projection_rows(store, "t") == baseline
    assert store.digests("t") == store.digests("base")
