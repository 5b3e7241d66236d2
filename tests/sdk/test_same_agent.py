"""The same agent code, embedded and against a real server: the same answers.

One function written against ``DecisionGraphAPI`` records decisions and then
investigates them. It runs on the embedded library (SQLite) and through the
HTTP client against ``decisiongraph serve`` (SQLite, and PostgreSQL with a
separate worker), direct and buffered. Results are the same typed objects,
equal field by field once the two fields a store assigns by its own clock
(``recorded_at``, and ``chain_hash`` which covers it) are blanked, and the
projection digests are identical.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from decisiongraph import (
    AppendResult,
    Client,
    DecisionGraph,
    DecisionGraphAPI,
    EntityRef,
    SourceObjectRef,
    SpooledEvent,
    StoredEvent,
)
from decisiongraph.core.errors import ConflictError, DecisionGraphError, NotFoundError
from decisiongraph.query.graph import GraphFilter
from decisiongraph.store import open_store
from tests.runtime.support import ROOT
from tests.service.conftest import Server

EXAMPLE = ROOT / "examples" / "discount_agent.py"
spec = importlib.util.spec_from_file_location("discount_agent", EXAMPLE)
assert spec is not None and spec.loader is not None
agent = importlib.util.module_from_spec(spec)
sys.modules["discount_agent"] = agent  # dataclasses look their module up
spec.loader.exec_module(agent)

DEALS = [
    agent.Deal("d1", "acme", 8),
    agent.Deal("d2", "acme", 18),
    agent.Deal("d3", "globex", 40),
]


def counter_ids() -> Callable[[], str]:
    numbers = itertools.count(1)
    return lambda: f"00000000-0000-4000-8000-{next(numbers):012d}"


def fixed_clock() -> Callable[[], datetime]:
    ticks = itertools.count()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return lambda: start + timedelta(seconds=next(ticks))


def blank(event: StoredEvent) -> StoredEvent:
    """Without the fields a store assigns from its own clock."""
    return dataclasses.replace(event, recorded_at="", chain_hash="")


def record(dg: DecisionGraphAPI) -> tuple[list[str], list[AppendResult]]:
    """The agent: the example's decisions, then a few direct helper calls."""
    outcomes = [agent.decide(dg, deal) for deal in DEALS]
    source, actor = agent.AGENT, agent.BOT
    trace_id = dg.start_trace(
        "review", "Quarterly review", EntityRef("account", "acme", "crm"), source, actor
    )
    first = "00000000-0000-4000-8000-000000000001"  # the first deal's trace
    results = [
        dg.observe_input(
            trace_id,
            "crm_export",
            SourceObjectRef("crm", "report", "q1", None),
            [],
            source,
            actor,
            tags=["quarterly"],
        ),
        dg.cite_precedent(trace_id, first, "same account", source, actor, similarity_score="0.9"),
        dg.finish_trace(trace_id, "success", source, actor, summary="reviewed"),
    ]
    return outcomes, results


def investigate(dg: DecisionGraphAPI, trace_ids: list[str]) -> dict[str, Any]:
    """Every read of the protocol, with what it returned."""
    head = dg.get_projection_health().event_log_last_seq
    assert dg.wait_for(head, timeout=60)
    first = trace_ids[0]
    center = dg.get_context_subgraph("trace", first).center
    pages = []
    page = dg.list_node_edges(center, limit=2)
    pages.append(page)
    while page.next_cursor is not None:
        page = dg.list_node_edges(center, cursor=page.next_cursor, limit=2)
        pages.append(page)
    errors: list[tuple[type[DecisionGraphError], str]] = []
    for failing in (
        lambda: dg.get_trace_summary("no-such-trace"),
        lambda: dg.get_trace_events("no-such-trace"),
        lambda: dg.find_precedents(policy_version="3"),  # a version needs its policy
        lambda: dg.list_traces(cursor="not-a-cursor"),
    ):
        with pytest.raises(DecisionGraphError) as caught:
            failing()
        errors.append((type(caught.value), caught.value.code))
    return {
        "events": {t: [blank(e) for e in dg.get_trace_events(t)] for t in trace_ids},
        "window": [blank(e) for e in dg.get_trace_events(first, since_trace_seq=1, limit=2)],
        "summaries": [dg.get_trace_summary(t) for t in trace_ids],
        "subgraph": dg.get_context_subgraph("trace", first, max_depth=2),
        "filtered": dg.get_context_subgraph(
            "trace",
            first,
            filter_opts=GraphFilter(
                edge_types=("trace_evaluated_policy", "trace_involves_entity"), max_depth=2
            ),
        ),
        "truncated": dg.get_context_subgraph(
            "trace", first, 3, GraphFilter(max_nodes=3, max_edges=2)
        ),
        "edge_pages": pages,
        "traces": list(dg.iter_traces(page_size=2)),
        "trace_page": dg.list_traces(limit=1),
        "failed_traces": dg.list_traces(outcome="failure"),
        "precedents": dg.find_precedents(policy_id="discount_cap"),
        "acme": dg.find_precedents(entity_type="account", entity_id="acme", limit=1),
        "health": dg.get_projection_health(include_digests=True),
        "digests": dg.digests(),
        "cursors": [(s.projection, s.cursor, s.head) for s in dg.projection_statuses()],
        "errors": errors,
    }


def run_embedded(tmp_path: Path) -> tuple[list[str], list[AppendResult], dict[str, Any]]:
    store = open_store(str(tmp_path / "embedded.db"))
    try:
        with DecisionGraph(store=store, clock=fixed_clock()) as dg:
            dg.new_id = counter_ids()  # type: ignore[method-assign]
            outcomes, results = record(dg)
            traces = [s.trace_id for s in dg_traces(dg)]
            return outcomes, results, investigate(dg, traces)
    finally:
        store.close()


def dg_traces(dg: DecisionGraph) -> list[StoredEvent]:
    return [e for e in dg.list_events() if e.event_type == "TraceStarted"]


@pytest.mark.parametrize("buffered", [False, True], ids=["direct", "buffered"])
def test_same_agent_code_same_results_embedded_and_remote(
    server: Server, tmp_path: Path, buffered: bool
) -> None:
    outcomes, embedded_results, embedded = run_embedded(tmp_path)
    assert outcomes == ["success", "success", "failure"]
    options: dict[str, Any] = {"clock": fixed_clock()}
    if buffered:
        options.update(buffered=True, spool_path=str(tmp_path / "spool.db"), max_batch=4)
    with Client(server.url, server.keys["writer"], **options) as client:
        client.new_id = counter_ids()  # type: ignore[method-assign]
        remote_outcomes, remote_results = record(client)
        assert client.flush(timeout=60)
        assert client.delivery_errors == []
        traces = list(embedded["events"])
        remote = investigate(client, traces)
        again = client.get_trace_events(traces[-1])
    assert remote_outcomes == outcomes
    if buffered:
        assert all(isinstance(r, SpooledEvent) for r in remote_results)
        assert [
            (r.event_id, r.trace_id, r.trace_seq, r.idempotency_key) for r in remote_results
        ] == [
            (e.event_id, e.trace_id, e.trace_seq, e.idempotency_key)
            for e in embedded_results
            if isinstance(e, StoredEvent)
        ]
    else:
        assert all(isinstance(r, StoredEvent) for r in remote_results)
        assert [blank(r) for r in remote_results if isinstance(r, StoredEvent)] == [
            blank(e) for e in embedded_results if isinstance(e, StoredEvent)
        ]
    assert remote == embedded
    assert remote["digests"] == embedded["digests"] == remote["health"].digests
    # Sanity: the comparison is over real content.
    assert len(embedded["events"]) == 4 and embedded["health"].event_count == 24
    assert [e.trace_seq for e in again] == [0, 1, 2, 3]
    assert embedded["errors"][0] == (NotFoundError, "DG_ERR_NOT_FOUND")


def test_the_same_refusals_embedded_and_remote(server: Server, tmp_path: Path) -> None:
    """A finished trace refuses appends alike; a stored event is returned alike on retry."""

    def scenario(dg: DecisionGraphAPI) -> list[Any]:
        seen: list[Any] = []
        trace_id = dg.start_trace(
            "w", "t", EntityRef("account", "a"), agent.AGENT, agent.BOT, trace_id="t1"
        )
        dg.finish_trace(trace_id, "success", agent.AGENT, agent.BOT)
        with pytest.raises(ConflictError) as caught:
            dg.commit_action(trace_id, "late", "success", agent.AGENT, agent.BOT)
        seen.append(caught.value.code)
        again = dg.finish_trace(trace_id, "success", agent.AGENT, agent.BOT)  # idempotent
        assert isinstance(again, StoredEvent)
        seen.append((again.repeated, again.trace_seq, again.log_seq))
        return seen

    with DecisionGraph(str(tmp_path / "refusals.db")) as dg:
        embedded = scenario(dg)
    with Client(server.url, server.keys["writer"]) as client:
        remote = scenario(client)
    assert embedded == remote == ["DG_ERR_CONFLICT", (True, 1, 2)]
