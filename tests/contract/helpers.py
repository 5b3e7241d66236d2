"""Builders and oracles shared by the contract tests (and the validation tests).

Everything here is backend-neutral: envelopes of every type, multi-trace
workloads, snapshots of a tenant's log and projections, and independent
re-implementations (from the spec, not from the product) of the digests and
of the projection-backed queries, used as oracles.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pytest

from decisiongraph.core.envelope import EventEnvelope, envelope_from_dict
from decisiongraph.core.errors import DecisionGraphError
from decisiongraph.core.refs import ActorRef, SourceRef
from decisiongraph.seed import generate_events
from decisiongraph.store import EventStore

SOURCE = SourceRef("contract_producer", "tests")
ACTOR = ActorRef("agent", "contract_bot")

PAYLOADS: dict[str, dict[str, Any]] = {
    "TraceStarted": {
        "workflow": "deal_approval",
        "title": "Discount",
        "primary_entity": {"entity_type": "account", "entity_id": "acme", "system": "crm"},
    },
    "InputObserved": {
        "input_id": "deal_size",
        "source": {"system": "crm", "object_type": "deal", "object_id": "d1"},
        "facts": [],
    },
    "EntityObserved": {
        "entity": {"entity_type": "account", "entity_id": "acme"},
        "role": "primary",
        "facts": [],
    },
    "PolicyEvaluated": {
        "policy": {"policy_id": "cap", "policy_version": "1"},
        "inputs": [],
        "decision": "require_exception",
    },
    "ExceptionRequested": {
        "exception_id": "ex1",
        "policy": {"policy_id": "cap", "policy_version": "1"},
        "reason": "strategic",
    },
    "ApprovalRecorded": {
        "approval_id": "ap1",
        "subject": {"subject_type": "exception", "subject_id": "ex1"},
        "approver": {"actor_type": "person", "actor_id": "vp"},
        "decision": "approved",
    },
    "PrecedentCited": {"cited_trace_id": "older", "reason": "same customer"},
    "ActionProposed": {
        "action_id": "act1",
        "action_type": "apply_discount",
        "target_entity": {"entity_type": "deal", "entity_id": "d1"},
        "target_system": "crm",
        "changes": [],
    },
    "ActionCommitted": {"action_id": "act1", "status": "success"},
    "TraceFinished": {"outcome": "success"},
}
ORDER = list(PAYLOADS)


def payload_of(event_type: str, **changes: Any) -> dict[str, Any]:
    """A deep copy of the type's valid payload with top-level keys replaced."""
    payload: dict[str, Any] = json.loads(json.dumps(PAYLOADS[event_type]))
    payload.update(changes)
    return payload


def envelope(
    trace_id: str,
    trace_seq: int,
    event_type: str,
    *,
    payload: Any = None,
    key: str | None = None,
    event_id: str | None = None,
    **overrides: Any,
) -> EventEnvelope:
    fields: dict[str, Any] = {
        "event_id": event_id or f"{trace_id}-{trace_seq}",
        "trace_id": trace_id,
        "trace_seq": trace_seq,
        "event_type": event_type,
        "occurred_at": f"2026-01-01T00:00:{trace_seq % 60:02d}Z",
        "source": SOURCE,
        "actor": ACTOR,
        "idempotency_key": key or f"{event_type}:{trace_id}:{trace_seq}",
        "payload": payload if payload is not None else payload_of(event_type),
    }
    fields.update(overrides)
    return EventEnvelope(**fields)


def full_trace(trace_id: str, *, finish: bool = True) -> list[EventEnvelope]:
    """One event of each type in a sensible order (TraceFinished last)."""
    types = ORDER if finish else ORDER[:-1]
    return [envelope(trace_id, seq, kind) for seq, kind in enumerate(types)]


def trace_of(trace_id: str, *steps: str | tuple[str, dict[str, Any]]) -> list[EventEnvelope]:
    """A trace from steps: an event type, or (event type, payload)."""
    events = []
    for seq, step in enumerate(steps):
        kind, payload = (step, None) if isinstance(step, str) else step
        events.append(envelope(trace_id, seq, kind, payload=payload))
    return events


def interleave(events: Iterable[EventEnvelope]) -> list[EventEnvelope]:
    """Round-robin merge of the traces, each trace keeping its own order."""
    by_trace: dict[str, list[EventEnvelope]] = {}
    for event in events:
        by_trace.setdefault(event.trace_id, []).append(event)
    queues = list(by_trace.values())
    merged: list[EventEnvelope] = []
    while queues:
        for queue in list(queues):
            merged.append(queue.pop(0))
            if not queue:
                queues.remove(queue)
    return merged


def workload(traces: int, seed: int, *, interleaved: bool = True) -> list[EventEnvelope]:
    """Generated traces (shared entities, citations), by default interleaved so
    that traces are open at the same time and span projection batches."""
    events = [envelope_from_dict(e) for e in generate_events(traces, seed=seed)]
    return interleave(events) if interleaved else events


def error_of(fn: Callable[[], object]) -> DecisionGraphError:
    """Run ``fn`` and return the domain error it must raise."""
    with pytest.raises(DecisionGraphError) as caught:
        fn()
    return caught.value


def code_of(fn: Callable[[], object]) -> str:
    return error_of(fn).code


# -- snapshots -----------------------------------------------------------------


def projection_rows(store: EventStore, tenant: str) -> tuple[list[Any], ...]:
    """Every projection row of the tenant (nodes, edges, summaries, precedents)."""
    return (
        list(store.iter_nodes(tenant)),
        list(store.iter_edges(tenant)),
        list(store.iter_summaries(tenant)),
        list(store.iter_precedents(tenant)),
    )


def log_state(store: EventStore, tenant: str) -> tuple[Any, ...]:
    """Everything observable about a tenant's log and projections."""
    return (
        store.get_last_log_seq(tenant),
        store.log_stats(tenant),
        store.list_events(tenant),
        store.projection_cursors(tenant),
        projection_rows(store, tenant),
        tenant in store.tenants(),
    )


# -- oracles ---------------------------------------------------------------------


def _sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("ascii")).hexdigest()


def _json_d(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def reference_digests(store: EventStore, tenant: str) -> dict[str, str]:
    """Spec section 9 computed here from the projection rows, sorted in Python
    by code point (independent of the database's ORDER BY)."""
    nodes, edges, summaries, precedents = projection_rows(store, tenant)
    graph = {
        "nodes": [{**n._asdict(), "attrs": {}} for n in sorted(nodes, key=lambda row: row.node_id)],
        "edges": [{**e._asdict(), "attrs": {}} for e in sorted(edges, key=lambda row: row.edge_id)],
    }
    context_graph = _sha(_json_d(graph))
    trace_summary = _sha(
        _json_d([s._asdict() for s in sorted(summaries, key=lambda row: row.trace_id)])
    )
    precedent_index = _sha(
        _json_d([p._asdict() for p in sorted(precedents, key=lambda row: row.source_event_id)])
    )
    full = _sha(f"{context_graph}:{trace_summary}:{precedent_index}")
    return {
        "context_graph": context_graph,
        "trace_summary": trace_summary,
        "precedent_index": precedent_index,
        "full_projection": full,
    }


def oracle_subgraph(
    edges: Sequence[Any],
    node_ids: set[str],
    center: str,
    max_depth: int,
    edge_types: Sequence[str] | None = None,
    node_types: Sequence[str] | None = None,
    max_nodes: int = 100,
    max_edges: int = 500,
) -> tuple[list[str], list[str], bool]:
    """Spec 10.3 breadth-first walk over all edges: (node ids, edge ids, truncated)."""
    visited_nodes = {center}
    visited_edges: set[str] = set()
    frontier = {center}
    truncated = False
    depth = 0
    while frontier and not truncated and depth < max_depth:
        level = sorted(
            (
                e
                for e in edges
                if (e.from_node_id in frontier or e.to_node_id in frontier)
                and (edge_types is None or e.edge_type in edge_types)
            ),
            key=lambda e: e.edge_id,
        )
        found: set[str] = set()
        for edge in level:
            if edge.edge_id in visited_edges:
                continue
            if len(visited_edges) >= max_edges:
                truncated = True
                break
            visited_edges.add(edge.edge_id)
            for node in (edge.from_node_id, edge.to_node_id):
                if node in visited_nodes:
                    continue
                if node_types is not None and node.split(":", 1)[0] not in node_types:
                    continue
                if len(visited_nodes) >= max_nodes:
                    truncated = True
                    break
                visited_nodes.add(node)
                found.add(node)
            if truncated:
                break
        frontier = found
        depth += 1
    return sorted(visited_nodes & node_ids), sorted(visited_edges), truncated
