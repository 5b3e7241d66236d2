"""Projection-backed queries (spec 10.2-10.6, 8.9) through ``decisiongraph.query``
and the ``DecisionGraph`` facade, on every backend.

Subgraphs, edge pages and precedent searches are compared with plain-Python
oracles computed from the projection rows, over many argument combinations,
besides hand-checked expectations.
"""

from __future__ import annotations

import itertools
from dataclasses import astuple
from typing import Any

import pytest

from decisiongraph import DecisionGraph
from decisiongraph.core.errors import ProjectionOutOfDateError
from decisiongraph.projections.rows import PrecedentRow, TraceSummaryRow
from decisiongraph.query import graph as graph_queries
from decisiongraph.query.graph import GraphEdgeCursor, GraphFilter
from decisiongraph.query.health import get_projection_health
from decisiongraph.query.precedents import PrecedentQuery, find_precedents
from decisiongraph.query.traces import get_trace_summary
from decisiongraph.store import EventStore
from tests.contract.helpers import (
    code_of,
    envelope,
    full_trace,
    oracle_subgraph,
    payload_of,
    trace_of,
    workload,
)

T = "queries"


def policy(pid: str, version: str) -> dict[str, str]:
    return {"policy_id": pid, "policy_version": version}


def evaluated(version: str, pid: str = "cap") -> tuple[str, dict[str, Any]]:
    return ("PolicyEvaluated", payload_of("PolicyEvaluated", policy=policy(pid, version)))


def requested(version: str, exception_id: str) -> tuple[str, dict[str, Any]]:
    return (
        "ExceptionRequested",
        payload_of("ExceptionRequested", exception_id=exception_id, policy=policy("cap", version)),
    )


def finished(outcome: str) -> tuple[str, dict[str, Any]]:
    return ("TraceFinished", {"outcome": outcome})


def self_citing() -> list[Any]:
    return trace_of(
        "self",
        "TraceStarted",
        ("PrecedentCited", payload_of("PrecedentCited", cited_trace_id="self")),
        "TraceFinished",
    )


def picking_traces() -> list[Any]:
    """Traces whose precedent rows exercise the one-row-per-trace rule."""
    return [
        # the exception row wins over the later evaluation
        *trace_of("pick1", "TraceStarted", evaluated("1"), requested("2", "e1"), evaluated("3"),
                  finished("success")),
        # among evaluations, the higher log_seq wins
        *trace_of("pick2", "TraceStarted", evaluated("1"), evaluated("4"), finished("failure")),
        # among exceptions, the higher log_seq wins
        *trace_of("pick3", "TraceStarted", requested("5", "ea"), requested("6", "eb"),
                  finished("success")),
        # finished, without any precedent row
        *trace_of("plain", "TraceStarted", finished("abandoned")),
    ]  # fmt: skip


@pytest.fixture
def dg(store: EventStore) -> DecisionGraph:
    graph = DecisionGraph(store=store, tenant=T)
    graph.append_events(full_trace("t1") + full_trace("t2") + self_citing())
    graph.append_events(picking_traces())
    graph.append_events(full_trace("open", finish=False))
    graph.append_events(workload(8, seed=3))
    # finished out of start order: t0 starts first, finishes last
    graph.append_events(trace_of("t0", "TraceStarted", evaluated("7", "late")))
    graph.append_events([envelope("t0", 2, "TraceFinished")])
    return graph


def test_trace_summary(dg: DecisionGraph) -> None:
    summary = dg.get_trace_summary("t1")
    assert (summary.trace_id, summary.workflow, summary.title) == (
        "t1",
        "deal_approval",
        "Discount",
    )
    assert (summary.primary_entity_type, summary.primary_entity_id) == ("account", "acme")
    assert (summary.outcome, summary.started_at, summary.finished_at) == (
        "success",
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:00:09Z",
    )
    assert (summary.event_count, summary.last_log_seq) == (2, 10)
    same = get_trace_summary(dg.store, T, "t1")
    assert same == summary
    still_open = dg.get_trace_summary("open")
    assert (still_open.outcome, still_open.finished_at, still_open.event_count) == (None, None, 1)
    for unknown in ("unknown", "older"):  # "older" is only a cited placeholder
        assert code_of(lambda unknown=unknown: dg.get_trace_summary(unknown)) == (
            "DG_ERR_NOT_FOUND"
        )
    assert code_of(lambda: get_trace_summary(dg.store, "other_tenant", "t1")) == (
        "DG_ERR_NOT_FOUND"
    )


def test_subgraph_hand_checked(dg: DecisionGraph) -> None:
    zero = dg.get_context_subgraph("trace", "t1", max_depth=0)
    assert zero.center == "trace:t1"
    assert [n.node_id for n in zero.nodes] == ["trace:t1"] and zero.edges == []
    one = dg.get_context_subgraph("trace", "t1")
    assert {n.node_id for n in one.nodes} == {
        "trace:t1",
        "entity:account:acme",
        "input:deal_size",
        "policy:cap:1",
        "exception:ex1",
        "trace:older",
        "action:act1",
    }
    assert len(one.edges) == 8 and all(e.trace_id == "t1" for e in one.edges)
    assert not one.truncated
    assert [e.edge_id for e in one.edges] == sorted(e.edge_id for e in one.edges)
    assert [n.node_id for n in one.nodes] == sorted(n.node_id for n in one.nodes)
    two = dg.get_context_subgraph("trace", "t1", max_depth=2)
    two_ids = {n.node_id for n in two.nodes}
    assert {"trace:t2", "actor:person:vp", "entity:deal:d1", "trace:pick1"} <= two_ids
    unknown = dg.get_context_subgraph("trace", "nobody", max_depth=3)
    assert (unknown.nodes, unknown.edges, unknown.truncated) == ([], [], False)
    # Edge-type filter.
    only = dg.get_context_subgraph(
        "trace", "t1", filter_opts=GraphFilter(edge_types=("trace_evaluated_policy",))
    )
    assert [e.edge_type for e in only.edges] == ["trace_evaluated_policy"]
    assert [n.node_id for n in only.nodes] == ["policy:cap:1", "trace:t1"]
    # Node-type filter: edges stay although their other end is filtered out.
    traces = dg.get_context_subgraph("trace", "t1", filter_opts=GraphFilter(node_types=("trace",)))
    assert [n.node_id for n in traces.nodes] == ["trace:older", "trace:t1"]
    assert len(traces.edges) == 8
    # max_nodes: the edge that hit the limit stays in the result.
    small = dg.get_context_subgraph("trace", "t1", filter_opts=GraphFilter(max_nodes=2))
    assert small.truncated
    assert [n.node_id for n in small.nodes] == ["trace:older", "trace:t1"]
    assert [e.edge_type for e in small.edges] == ["trace_cited_precedent", "trace_committed_action"]
    few = dg.get_context_subgraph("trace", "t1", filter_opts=GraphFilter(max_edges=3))
    assert few.truncated and len(few.edges) == 3
    assert {n.node_id for n in few.nodes} == {
        "trace:t1",
        "trace:older",
        "action:act1",
        "policy:cap:1",
    }
    # The argument overrides the filter's depth unless it is the default 1.
    deep = GraphFilter(max_depth=2)
    assert dg.get_context_subgraph("trace", "t1", filter_opts=deep) == two
    assert dg.get_context_subgraph("trace", "t1", max_depth=1, filter_opts=deep) == two
    assert dg.get_context_subgraph("trace", "t1", max_depth=0, filter_opts=deep) == zero
    # A self-loop is one edge.
    loop = dg.get_context_subgraph("trace", "self")
    assert [e.edge_type for e in loop.edges].count("trace_cited_precedent") == 1


def test_subgraph_matches_the_spec_walk(dg: DecisionGraph) -> None:
    store = dg.store
    edges = list(store.iter_edges(T))
    nodes = {n.node_id: n for n in store.iter_nodes(T)}
    edge_rows = {e.edge_id: e for e in edges}
    centers = ["trace:t1", "trace:self", "entity:account:acme", "policy:cap:1", "trace:older",
               "actor:agent:contract_bot", "trace:nobody"]  # fmt: skip
    shared = sorted({e.to_node_id for e in edges if e.to_node_id.startswith("entity:")})[:3]
    filters: list[dict[str, Any]] = [
        {},
        {"edge_types": ("trace_involves_entity", "trace_evaluated_policy")},
        {"node_types": ("trace", "entity")},
        {"node_types": ("policy",), "edge_types": ("trace_evaluated_policy",)},
        {"max_nodes": 1},
        {"max_nodes": 5},
        {"max_edges": 1},
        {"max_edges": 7, "node_types": ("trace",)},
    ]
    checked = 0
    for center, depth, options in itertools.product(centers + shared, (0, 1, 2, 3), filters):
        node_type, _, node_id = center.partition(":")
        got = graph_queries.get_context_subgraph(
            store, T, node_type, node_id, filter_opts=GraphFilter(max_depth=depth, **options)
        )
        want_nodes, want_edges, truncated = oracle_subgraph(
            edges, set(nodes), center, depth, **options
        )
        label = (center, depth, options)
        assert got.nodes == [nodes[n] for n in want_nodes], label
        assert got.edges == [edge_rows[e] for e in want_edges], label
        assert got.truncated == truncated, label
        checked += 1
    assert checked == (len(centers) + 3) * 4 * len(filters)


def test_subgraph_argument_validation(dg: DecisionGraph) -> None:
    bad = [
        lambda: dg.get_context_subgraph("trace", "t1", max_depth=11),
        lambda: dg.get_context_subgraph("trace", "t1", max_depth=-1),
        lambda: GraphFilter(max_depth=11),
        lambda: GraphFilter(max_nodes=0),
        lambda: GraphFilter(max_edges=0),
        lambda: GraphFilter(edge_types=()),
        lambda: GraphFilter(node_types=()),
        # fixed: a string was taken as a list of one-letter types
        lambda: GraphFilter(edge_types="trace_involves_entity"),  # type: ignore[arg-type]
        lambda: GraphFilter(node_types="trace"),  # type: ignore[arg-type]
    ]
    for call in bad:
        assert code_of(call) == "DG_ERR_INVALID_ARGUMENT"
    assert dg.get_context_subgraph("trace", "t1", max_depth=10).nodes


def _walk_pages(
    dg: DecisionGraph, node: str, direction: str, limit: int, *, drop_log_seq: bool = False
) -> list[Any]:
    seen: list[Any] = []
    cursor: GraphEdgeCursor | None = None
    for _ in range(1000):
        page = dg.list_node_edges(node, direction, cursor, limit=limit)
        assert len(page.edges) <= limit
        seen.extend(page.edges)
        if page.next_cursor is None:
            return seen
        assert page.next_cursor.direction == direction
        assert page.next_cursor.edge_key == page.edges[-1].edge_id
        assert page.next_cursor.log_seq == page.edges[-1].log_seq
        cursor = page.next_cursor
        if drop_log_seq:  # the position is then looked up from the edge
            cursor = GraphEdgeCursor(cursor.edge_key, direction)
    raise AssertionError("paging did not end")


def test_edge_pages_cover_every_edge_once(dg: DecisionGraph) -> None:
    edges = list(dg.store.iter_edges(T))
    nodes = ["trace:t1", "action:act1", "entity:account:acme", "trace:self", "policy:cap:1",
             "trace:older", "trace:unknown"]  # fmt: skip
    for node, direction in itertools.product(nodes, ("outgoing", "incoming", "both")):
        expected = sorted(
            (
                e
                for e in edges
                if (direction != "incoming" and e.from_node_id == node)
                or (direction != "outgoing" and e.to_node_id == node)
            ),
            key=lambda e: (e.log_seq, e.edge_id),
        )
        for limit in (1, 2, 3, 100):
            assert _walk_pages(dg, node, direction, limit) == expected, (node, direction, limit)
        assert _walk_pages(dg, node, direction, 1, drop_log_seq=True) == expected
        full = dg.list_node_edges(node, direction, None, limit=len(expected) or 1)
        assert full.next_cursor is None
    # Two edges at one log_seq (ActionProposed): ordered, and the cursor moves on.
    first = dg.list_node_edges("action:act1", "both", None, limit=1)
    second = dg.list_node_edges("action:act1", "both", first.next_cursor, limit=1)
    assert first.edges[0].log_seq == second.edges[0].log_seq == 8
    assert first.edges[0].edge_type == "action_targets_entity"
    assert second.edges[0].edge_type == "trace_proposed_action"
    # The self-loop appears once.
    loop = dg.list_node_edges("trace:self", "both").edges
    assert [e.edge_type for e in loop].count("trace_cited_precedent") == 1
    # Through the query module directly.
    direct = graph_queries.list_node_edges(dg.store, T, "trace:t1", "outgoing", None, 3)
    assert direct == dg.list_node_edges("trace:t1", "outgoing", None, limit=3)


def test_edge_page_argument_validation(dg: DecisionGraph) -> None:
    some = dg.list_node_edges("trace:t1", "both", limit=1)
    assert some.next_cursor is not None
    bad = [
        lambda: dg.list_node_edges("trace:t1", "incoming", some.next_cursor),
        lambda: dg.list_node_edges("trace:t1", "both", GraphEdgeCursor("no-such-edge", "both")),
        lambda: dg.list_node_edges("trace:t1", "both", limit=0),
        lambda: dg.list_node_edges("trace:t1", "both", limit=-3),
        lambda: dg.list_node_edges("trace:t1", "sideways"),
        lambda: GraphEdgeCursor("", "both"),
        lambda: GraphEdgeCursor("x", "sideways"),
        lambda: GraphEdgeCursor("x", "both", 0),
    ]
    for call in bad:
        assert code_of(call) == "DG_ERR_INVALID_ARGUMENT"
    # No upper cap on the page size; a cursor with an explicit position is
    # taken as given, whatever its edge key.
    assert len(dg.list_node_edges("trace:t1", "both", limit=1_000_000).edges) == 8
    after = dg.list_node_edges("trace:t1", "both", GraphEdgeCursor("~", "both", 8))
    assert [e.log_seq for e in after.edges] == [9]
    # Edge ids compare by code point, not by a linguistic collation: every
    # ASCII id sorts before "é", so both log_seq 8 edges lie before this cursor.
    every = dg.list_node_edges("action:act1", "both", limit=1000).edges
    assert [e.log_seq for e in every][:3] == [8, 8, 9]
    accent = dg.list_node_edges("action:act1", "both", GraphEdgeCursor("é", "both", 8))
    assert accent.edges == every[2:]
    upper = dg.list_node_edges("action:act1", "both", GraphEdgeCursor("Z", "both", 8))
    assert upper.edges == every  # "Z" sorts before lowercase letters


def oracle_precedents(
    summaries: list[TraceSummaryRow], rows: list[PrecedentRow], **query: Any
) -> list[tuple[Any, ...]]:
    summaries = [s for s in summaries if s.outcome is not None]
    for field, column in (
        ("outcome", "outcome"),
        ("entity_type", "primary_entity_type"),
        ("entity_id", "primary_entity_id"),
    ):
        if query.get(field):
            summaries = [s for s in summaries if getattr(s, column) == query[field]]
    hits = []
    for s in summaries:
        if not query.get("policy_id"):
            hits.append((s, None, None))
            continue
        candidates = [
            p
            for p in rows
            if p.trace_id == s.trace_id
            and p.policy_id == query["policy_id"]
            and (not query.get("policy_version") or p.policy_version == query["policy_version"])
        ]
        if candidates:
            best = min(
                candidates, key=lambda p: (p.exception_id is None, -p.log_seq, p.source_event_id)
            )
            hits.append((s, best.policy_id, best.policy_version))
    hits.sort(key=lambda hit: (-hit[0].last_log_seq, hit[0].trace_id))
    return [
        (s.trace_id, s.workflow, s.title, s.outcome, pid, version, s.finished_at)
        for s, pid, version in hits[: query.get("limit", 100)]
    ]


def test_precedent_search_hand_checked(dg: DecisionGraph) -> None:
    def picked(**query: Any) -> dict[str, str | None]:
        return {h.trace_id: h.policy_version for h in dg.find_precedents(**query)}

    assert picked(policy_id="cap") == {
        "t1": "1",  # exception row (ex1, version 1)
        "t2": "1",
        "pick1": "2",  # the exception row beats the later evaluation
        "pick2": "4",  # the later of two evaluations
        "pick3": "6",  # the later of two exceptions
    }
    assert picked(policy_id="cap", policy_version="1") == {
        "t1": "1",
        "t2": "1",
        "pick1": "1",
        "pick2": "1",
    }
    assert picked(policy_id="cap", policy_version="nope") == {}
    assert picked(policy_id="late") == {"t0": "7"}
    # Most recently finished first: t0 started before everything in the
    # log but finished last.
    everything = dg.find_precedents(limit=10_000)
    assert everything[0].trace_id == "t0"
    assert [h.trace_id for h in everything][-3:] == ["self", "t2", "t1"]
    assert all(h.policy_id is None and h.policy_version is None for h in everything)
    assert "open" not in {h.trace_id for h in everything}  # unfinished traces never match
    mine = {"t1", "t2", "self", "pick1", "pick2", "pick3", "plain", "t0"}
    for outcome, expected in (("failure", {"pick2"}), ("abandoned", {"plain"})):
        hits = dg.find_precedents(outcome=outcome)
        assert {h.outcome for h in hits} == {outcome}
        assert {h.trace_id for h in hits} & mine == expected
    acme = dg.find_precedents(entity_type="account", entity_id="acme")
    assert [h.trace_id for h in acme][:2] == ["t0", "plain"] and "t1" in {h.trace_id for h in acme}
    assert dg.find_precedents(entity_type="account", entity_id="nobody") == []
    assert [h.trace_id for h in dg.find_precedents(policy_id="cap", limit=2)] == ["pick3", "pick2"]
    hit = dg.find_precedents(policy_id="cap", limit=1)[0]
    assert astuple(hit) == ("pick3", "deal_approval", "Discount", "success", "cap", "6",
                            "2026-01-01T00:00:03Z")  # fmt: skip


def test_precedent_search_matches_the_spec(dg: DecisionGraph) -> None:
    store = dg.store
    all_summaries = list(store.iter_summaries(T))
    rows = list(store.iter_precedents(T))
    summaries = [s for s in all_summaries if s.outcome]
    policies = sorted({(p.policy_id, p.policy_version) for p in rows})
    policy_ids = sorted({pid for pid, _ in policies})
    entities = sorted({(s.primary_entity_type, s.primary_entity_id) for s in summaries})[:4]
    outcomes = sorted({s.outcome for s in summaries if s.outcome})
    queries: list[dict[str, Any]] = []
    for pid in [None, "", *policy_ids, "nope"]:
        versions = [None]
        if pid:
            versions += [*[v for p, v in policies if p == pid][:2], "nope", ""]
        for version in versions:
            queries.append({"policy_id": pid, "policy_version": version})
    combos: list[dict[str, Any]] = []
    for entity_type, entity_id in entities:
        combos += [
            {"entity_type": entity_type},
            {"entity_type": entity_type, "entity_id": entity_id},
        ]
    combos += [{"outcome": o} for o in outcomes] + [{"entity_type": "", "outcome": ""}]
    checked = 0
    for base, extra, limit in itertools.product(queries, [{}, *combos], (1, 3, 100)):
        query = {**base, **extra, "limit": limit}
        got = [astuple(h) for h in find_precedents(store, T, PrecedentQuery(**query))]
        assert got == oracle_precedents(all_summaries, rows, **query), query
        checked += 1
    assert checked > 300


def test_precedent_query_validation(dg: DecisionGraph) -> None:
    bad: list[dict[str, Any]] = [
        {"limit": 0},
        {"limit": 10_001},
        {"limit": -1},
        {"policy_version": "1"},
        {"policy_id": "", "policy_version": "1"},
        {"entity_id": "acme"},
        {"entity_type": "", "entity_id": "acme"},
    ]
    for kwargs in bad:
        assert code_of(lambda kwargs=kwargs: dg.find_precedents(**kwargs)) == (
            "DG_ERR_INVALID_ARGUMENT"
        ), kwargs
        assert code_of(lambda kwargs=kwargs: PrecedentQuery(**kwargs)) == (
            "DG_ERR_INVALID_ARGUMENT"
        )
    assert len(dg.find_precedents(limit=10_000)) == len(dg.find_precedents(limit=1000))
    assert len(dg.find_precedents(limit=1)) == 1


def test_projection_health(dg: DecisionGraph) -> None:
    store = dg.store
    stats = store.log_stats(T)
    health = dg.get_projection_health()
    assert health.as_dict() == {
        "event_count": stats.event_count,
        "trace_count": stats.trace_count,
        "event_log_last_seq": stats.last_log_seq,
        "projected_last_seq": stats.last_log_seq,
        "pending_events": 0,
        "is_stale": False,
        "digests": None,
    }
    assert stats.trace_count == 4 + 4 + 8 + 1  # t1 t2 self open, picks, workload, t0
    with_digests = get_projection_health(store, T, include_digests=True)
    assert with_digests.digests == store.digests(T)
    store.append(T, full_trace("late"))  # not projected
    stale = dg.get_projection_health(include_digests=True)
    assert (stale.is_stale, stale.pending_events) == (True, 10)
    assert stale.event_log_last_seq == stats.last_log_seq + 10
    assert stale.projected_last_seq == stats.last_log_seq
    assert stale.event_count == stats.event_count + 10
    assert stale.trace_count == stats.trace_count + 1
    assert stale.digests == with_digests.digests  # digests of the tables as they stand
    empty = get_projection_health(store, "empty_tenant", include_digests=True)
    assert (empty.event_count, empty.trace_count, empty.pending_events) == (0, 0, 0)
    assert not empty.is_stale


def test_stale_projections_refuse_projection_reads(store: EventStore) -> None:
    dg = DecisionGraph(store=store, tenant=T)
    dg.append_events(full_trace("t1"))
    store.append(T, full_trace("t2"))  # the log moves ahead of the projections
    cursor = GraphEdgeCursor("x", "both", 1)
    projection_reads = [
        lambda: dg.get_trace_summary("t1"),
        lambda: dg.get_trace_summary("unknown"),  # stale beats not-found
        lambda: dg.get_context_subgraph("trace", "t1"),
        lambda: dg.get_context_subgraph("trace", "t1", max_depth=0),
        lambda: dg.list_node_edges("trace:t1"),
        lambda: dg.list_node_edges("trace:t1", "both", cursor),
        lambda: dg.find_precedents(),
        lambda: dg.find_precedents(policy_id="cap"),
        lambda: get_trace_summary(store, T, "t1"),
        lambda: find_precedents(store, T, PrecedentQuery()),
        lambda: graph_queries.get_context_subgraph(store, T, "trace", "t1"),
        lambda: graph_queries.list_node_edges(store, T, "trace:t1"),
    ]

    def all_stale() -> None:
        for read in projection_reads:
            error = code_of(read)
            assert error == "DG_ERR_PROJECTION_OUT_OF_DATE", read

    all_stale()
    # The event log stays readable.
    assert len(dg.get_trace_events("t2")) == 10
    assert len(dg.list_events()) == 20
    assert dg.is_trace_finished("t2")
    assert code_of(lambda: dg.get_trace_events("unknown")) == "DG_ERR_NOT_FOUND"
    # One step behind is still stale.
    store.project_pending(T, until_log_seq=19)
    assert dg.get_projection_health().pending_events == 1
    all_stale()
    assert dg.sync_projections() == 1
    assert dg.get_trace_summary("t2").outcome == "success"
    assert [h.trace_id for h in dg.find_precedents()] == ["t2", "t1"]
    assert dg.list_node_edges("trace:t2").edges
    assert code_of(lambda: dg.get_trace_summary("unknown")) == "DG_ERR_NOT_FOUND"


def test_facade_without_projection_on_append(store: EventStore) -> None:
    dg = DecisionGraph(store=store, tenant=T, project_on_append=False)
    dg.append_events(full_trace("t1"))
    health = dg.get_projection_health()
    assert (health.is_stale, health.pending_events, health.projected_last_seq) == (True, 10, 0)
    assert code_of(lambda: dg.get_trace_summary("t1")) == "DG_ERR_PROJECTION_OUT_OF_DATE"
    assert dg.sync_projections(batch_size=4) == 10
    assert dg.get_trace_summary("t1").event_count == 2
    # The facade's own helpers keep working on top (append_event picks the next trace_seq).
    stored = dg.append_event(
        "t2", "TraceStarted", payload_of("TraceStarted"), {"producer_id": "p", "system": "s"},
        {"actor_type": "agent", "actor_id": "a"}, occurred_at="2026-02-02T00:00:00Z",
    )  # fmt: skip
    assert (stored.trace_seq, stored.idempotency_key) == (0, "TraceStarted:t2:0")
    nxt = dg.append_event("t2", "TraceFinished", {"outcome": "success"},
                          {"producer_id": "p", "system": "s"},
                          {"actor_type": "agent", "actor_id": "a"})  # fmt: skip
    assert (nxt.trace_seq, nxt.log_seq) == (1, 12)
    assert code_of(lambda: dg.get_context_subgraph("trace", "t2")) == (
        "DG_ERR_PROJECTION_OUT_OF_DATE"
    )
    dg.sync_projections()
    assert dg.get_trace_summary("t2").started_at == "2026-02-02T00:00:00Z"


def test_partial_projection_staleness(store: EventStore) -> None:
    """Reads check only the projections they use (per-projection cursors)."""
    store.append(T, full_trace("t1"))
    store.project_pending(T, projections=["trace_summary"])
    dg = DecisionGraph(store=store, tenant=T)
    assert dg.get_trace_summary("t1").outcome == "success"
    for read in (
        lambda: dg.get_context_subgraph("trace", "t1"),
        lambda: dg.list_node_edges("trace:t1"),
        lambda: dg.find_precedents(),  # needs the precedent index too
    ):
        assert code_of(read) == "DG_ERR_PROJECTION_OUT_OF_DATE"
    # The error names the projection behind, not the current one beside it.
    with pytest.raises(ProjectionOutOfDateError) as stale:
        dg.find_precedents()
    assert stale.value.details["projections"] == ["precedent_index"]
    assert stale.value.details["projected_last_seq"] == 0
    assert stale.value.message == "Projection precedent_index at log_seq 0; the log is at 10"
    health = dg.get_projection_health()
    assert (health.projected_last_seq, health.is_stale, health.pending_events) == (0, True, 10)
    store.project_pending(T, projections=["context_graph"])
    assert dg.get_context_subgraph("trace", "t1").edges
    assert code_of(lambda: dg.find_precedents()) == "DG_ERR_PROJECTION_OUT_OF_DATE"
    store.project_pending(T)
    assert [h.trace_id for h in dg.find_precedents(policy_id="cap")] == ["t1"]


def test_wide_graphs(store: EventStore) -> None:
    """Frontiers and node sets larger than one lookup (hundreds of ids)."""
    inputs = [
        envelope(
            "wide",
            seq,
            "InputObserved",
            payload=payload_of("InputObserved", input_id=f"i{seq:03d}"),
        )
        for seq in range(1, 451)
    ]
    other = [
        envelope(
            "other",
            seq,
            "InputObserved",
            payload=payload_of("InputObserved", input_id=f"i{seq:03d}"),
        )
        for seq in range(1, 301)
    ]
    store.append(T, [envelope("wide", 0, "TraceStarted"), *inputs], project=True)
    store.append(T, [envelope("other", 0, "TraceStarted"), *other], project=True)
    edges = list(store.iter_edges(T))
    nodes = {n.node_id: n for n in store.iter_nodes(T)}
    big = {"max_nodes": 10_000, "max_edges": 10_000}
    for center, depth in (
        ("trace:wide", 1),
        ("trace:wide", 2),
        ("input:i007", 2),
        ("input:i400", 3),
    ):
        node_type, _, node_id = center.partition(":")
        got = graph_queries.get_context_subgraph(
            store, T, node_type, node_id, filter_opts=GraphFilter(max_depth=depth, **big)
        )
        want_nodes, want_edges, truncated = oracle_subgraph(edges, set(nodes), center, depth, **big)
        assert [n.node_id for n in got.nodes] == want_nodes, center
        assert [e.edge_id for e in got.edges] == want_edges, center
        assert not truncated and not got.truncated
    two = graph_queries.get_context_subgraph(
        store, T, "trace", "wide", filter_opts=GraphFilter(max_depth=2, **big)
    )
    assert len(two.nodes) == 1 + 1 + 450 + 1  # itself, the entity, the inputs, trace:other
    default = graph_queries.get_context_subgraph(store, T, "trace", "wide")
    assert default.truncated and len(default.nodes) == 100
    pages = []
    cursor = None
    while True:
        page = graph_queries.list_node_edges(store, T, "trace:wide", "outgoing", cursor, 100)
        pages.append(page.edges)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert [len(p) for p in pages] == [100, 100, 100, 100, 51]


def test_queries_are_per_tenant(store: EventStore) -> None:
    a = DecisionGraph(store=store, tenant="a")
    b = a.for_tenant("b")
    a.append_events(trace_of("t1", "TraceStarted", evaluated("1"), finished("success")))
    b.append_events(trace_of("t1", "TraceStarted", evaluated("2"), finished("failure")))
    b.append_events(full_trace("t2"))
    assert [
        (h.trace_id, h.policy_version, h.outcome) for h in a.find_precedents(policy_id="cap")
    ] == [("t1", "1", "success")]
    assert [h.trace_id for h in b.find_precedents(policy_id="cap")] == ["t2", "t1"]
    assert a.get_trace_summary("t1").outcome == "success"
    assert code_of(lambda: a.get_trace_summary("t2")) == "DG_ERR_NOT_FOUND"
    assert {n.node_id for n in a.get_context_subgraph("trace", "t1").nodes} == {
        "trace:t1",
        "entity:account:acme",
        "policy:cap:1",
    }
    assert all(e.trace_id == "t1" for e in a.list_node_edges("entity:account:acme").edges)
    assert len(b.list_node_edges("entity:account:acme").edges) == 3
    assert a.get_projection_health().event_count == 3


def test_trace_list_pages_filters_and_bad_input(store: EventStore) -> None:
    dg = DecisionGraph(store=store, tenant=T)
    for index in range(5):
        dg.append_events(full_trace(f"t{index}"))
    every = list(dg.iter_traces(page_size=2))
    # Most recently changed first; each trace exactly once across the pages.
    assert [t.trace_id for t in every] == ["t4", "t3", "t2", "t1", "t0"]
    first = dg.list_traces(limit=2)
    assert [t.trace_id for t in first.traces] == ["t4", "t3"] and first.next_cursor
    rest = dg.list_traces(limit=10, cursor=first.next_cursor)
    assert [t.trace_id for t in rest.traces] == ["t2", "t1", "t0"] and rest.next_cursor is None
    changed = dg.list_traces(since=every[2].last_log_seq)
    assert [t.trace_id for t in changed.traces] == ["t4", "t3"]
    assert dg.list_traces(workflow="no-such-workflow").traces == []
    assert code_of(lambda: dg.list_traces(cursor="%%%")) == "DG_ERR_INVALID_ARGUMENT"
    assert code_of(lambda: dg.list_traces(limit=0)) == "DG_ERR_INVALID_ARGUMENT"
    assert code_of(lambda: dg.list_traces(limit=1001)) == "DG_ERR_INVALID_ARGUMENT"
    assert code_of(lambda: dg.list_traces(since=-1)) == "DG_ERR_INVALID_ARGUMENT"
