"""Projections (spec 8) and projection-backed queries (spec 10), on every backend."""

from __future__ import annotations

import pytest

from decisiongraph import DecisionGraph
from decisiongraph.core.envelope import envelope_from_dict
from decisiongraph.core.errors import DecisionGraphError
from decisiongraph.query.graph import GraphEdgeCursor, GraphFilter
from decisiongraph.seed import generate_events
from decisiongraph.store import EventStore
from tests.conftest import load_golden
from tests.contract.helpers import full_trace

T = "proj"


def rows(store: EventStore, tenant: str) -> tuple[list, list, list, list]:  # type: ignore[type-arg]
    return (
        list(store.iter_nodes(tenant)),
        list(store.iter_edges(tenant)),
        list(store.iter_summaries(tenant)),
        list(store.iter_precedents(tenant)),
    )


@pytest.mark.parametrize("batch_size", [1, 2, 3, 7, 1000])
def test_incremental_equals_rebuild(store: EventStore, batch_size: int) -> None:
    events = [envelope_from_dict(e) for e in generate_events(12, seed=batch_size)]
    store.append(T, events)
    applied = store.project_pending(T, batch_size=batch_size)
    assert applied == len(events)
    incremental = rows(store, T)
    digests = store.digests(T)
    store.reset_projections(T)
    assert store.projection_cursor(T) == 0 and rows(store, T) == ([], [], [], [])
    store.project_pending(T, batch_size=5000)
    assert rows(store, T) == incremental
    assert store.digests(T) == digests


def test_inline_projection_equals_catch_up(store: EventStore) -> None:
    events = [envelope_from_dict(e) for e in generate_events(8, seed=3)]
    for event in events:
        store.append("inline", [event], project=True)
    store.append("later", events)
    assert store.projection_cursor("later") == 0
    store.project_pending("later")
    assert rows(store, "inline") == rows(store, "later")


def test_placeholders_first_writer_and_summary_quirk(store: EventStore) -> None:
    golden, expected = load_golden("dealdesk")
    store.append(T, [envelope_from_dict(e) for e in golden])
    store.project_pending(T)
    assert store.digests(T).as_dict() == expected
    nodes = {n.node_id: n for n in store.iter_nodes(T)}
    placeholders = [
        n for n in nodes.values() if n.node_type == "trace" and n.trace_id != golden[0]["trace_id"]
    ]
    assert placeholders, "the cited trace should exist as a placeholder node"
    summary = store.get_summary(T, golden[0]["trace_id"])
    assert summary is not None and summary.event_count == 2 and summary.outcome is not None


def test_open_trace_has_no_precedents_and_count_one(store: EventStore) -> None:
    store.append(T, full_trace("open", finish=False))
    store.project_pending(T)
    summary = store.get_summary(T, "open")
    assert summary is not None and summary.event_count == 1 and summary.finished_at is None
    assert list(store.iter_precedents(T)) == []


def test_shared_entity_node_keeps_first_writer(store: EventStore) -> None:
    store.append(T, full_trace("first") + full_trace("second"))
    store.project_pending(T)
    node = store.get_nodes(T, ["entity:account:acme"])[0]
    assert node.trace_id == "first" and node.log_seq == 1


@pytest.fixture
def dg(backend_url: str) -> DecisionGraph:
    graph = DecisionGraph(backend_url, tenant=T)
    graph.append_events(full_trace("t1") + full_trace("t2"))
    return graph


def test_queries(dg: DecisionGraph) -> None:
    summary = dg.get_trace_summary("t1")
    assert (summary.workflow, summary.outcome, summary.primary_entity_id) == (
        "deal_approval",
        "success",
        "acme",
    )
    sub0 = dg.get_context_subgraph("trace", "t1", max_depth=0)
    assert [n.node_id for n in sub0.nodes] == ["trace:t1"] and sub0.edges == []
    sub1 = dg.get_context_subgraph("trace", "t1")
    assert all("t1" in e.edge_id for e in sub1.edges) and not sub1.truncated
    sub2 = dg.get_context_subgraph("trace", "t1", max_depth=2)
    assert "trace:t2" in {n.node_id for n in sub2.nodes}  # via the shared entity
    only_policies = dg.get_context_subgraph(
        "trace", "t1", filter_opts=GraphFilter(edge_types=("trace_evaluated_policy",))
    )
    assert {e.edge_type for e in only_policies.edges} == {"trace_evaluated_policy"}
    small = dg.get_context_subgraph("trace", "t1", filter_opts=GraphFilter(max_nodes=2))
    assert small.truncated and len(small.nodes) <= 2
    assert dg.get_context_subgraph("trace", "nobody").nodes == []


def test_edge_pages_cover_every_edge_once(dg: DecisionGraph) -> None:
    node = "entity:account:acme"
    seen = []
    cursor = None
    while True:
        page = dg.list_node_edges(node, "both", cursor, limit=1)
        seen.extend(page.edges)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    everything = dg.list_node_edges(node, "both", None, limit=100).edges
    assert [e.edge_id for e in seen] == [e.edge_id for e in everything]
    assert len(seen) == len({e.edge_id for e in seen}) >= 4
    assert [(e.log_seq, e.edge_id) for e in seen] == sorted((e.log_seq, e.edge_id) for e in seen)
    for bad in (
        lambda: dg.list_node_edges(node, "incoming", GraphEdgeCursor(seen[0].edge_id, "outgoing")),
        lambda: dg.list_node_edges(node, "both", GraphEdgeCursor("unknown", "both")),
        lambda: dg.list_node_edges(node, "both", limit=0),
    ):
        with pytest.raises(DecisionGraphError) as caught:
            bad()
        assert caught.value.code == "DG_ERR_INVALID_ARGUMENT"


def test_precedent_search(dg: DecisionGraph) -> None:
    hits = dg.find_precedents(policy_id="cap")
    assert [h.trace_id for h in hits] == ["t2", "t1"]  # most recent first
    assert {(h.policy_id, h.policy_version) for h in hits} == {("cap", "1")}
    assert dg.find_precedents(policy_id="cap", policy_version="2") == []
    assert [
        h.trace_id for h in dg.find_precedents(entity_type="account", entity_id="acme", limit=1)
    ] == ["t2"]
    assert dg.find_precedents(outcome="failure") == []
    for kwargs in ({"limit": 0}, {"limit": 10_001}, {"policy_version": "1"}, {"entity_id": "acme"}):
        with pytest.raises(DecisionGraphError) as caught:
            dg.find_precedents(**kwargs)
        assert caught.value.code == "DG_ERR_INVALID_ARGUMENT"


def test_staleness_and_not_found(backend_url: str) -> None:
    dg = DecisionGraph(backend_url, tenant="stale", project_on_append=False)
    dg.append_events(full_trace("t1"))
    health = dg.get_projection_health()
    assert health.is_stale and health.pending_events == 10
    for read in (
        lambda: dg.get_trace_summary("t1"),
        lambda: dg.get_context_subgraph("trace", "t1"),
        lambda: dg.find_precedents(),
    ):
        with pytest.raises(DecisionGraphError) as caught:
            read()
        assert caught.value.code == "DG_ERR_PROJECTION_OUT_OF_DATE"
    assert len(dg.get_trace_events("t1")) == 10  # the log itself is always readable
    dg.sync_projections()
    assert not dg.get_projection_health().is_stale
    with pytest.raises(DecisionGraphError) as caught:
        dg.get_trace_events("missing")
    assert caught.value.code == "DG_ERR_NOT_FOUND"
    with pytest.raises(DecisionGraphError) as caught:
        dg.get_trace_summary("missing")
    assert caught.value.code == "DG_ERR_NOT_FOUND"
    dg.close()
