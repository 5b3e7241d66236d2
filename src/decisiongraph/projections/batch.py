"""Fold a batch of stored events into the writes every projection needs.

The fold is pure. Stores apply its result in one transaction together with
the cursors, which is what makes incremental catch-up and full rebuild give
the same rows for any batch size: first-writer-wins inserts are kept in
first-seen order and applied with insert-or-ignore.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from decisiongraph.core.errors import ConflictError, EventSequenceInvalidError
from decisiongraph.core.event_types import TRACE_FINISHED
from decisiongraph.projections.context_graph import graph_writes
from decisiongraph.projections.policy_index import policy_eval_row
from decisiongraph.projections.projected_event import ProjectedEvent
from decisiongraph.projections.rows import (
    CONTEXT_GRAPH,
    POLICY_EVAL_INDEX,
    PRECEDENT_INDEX,
    PROJECTION_NAMES,
    TRACE_SUMMARY,
    EdgeRow,
    NodeRow,
    PolicyEvalRow,
    TraceFinish,
    TraceSummaryRow,
)
from decisiongraph.projections.trace_summary import summary_write


@dataclass(slots=True)
class BatchWrites:
    """Everything one batch writes, in application order."""

    nodes: dict[str, NodeRow] = field(default_factory=dict)
    edges: dict[str, EdgeRow] = field(default_factory=dict)
    summary_starts: list[TraceSummaryRow] = field(default_factory=list)
    summary_finishes: list[TraceFinish] = field(default_factory=list)
    policy_rows: list[PolicyEvalRow] = field(default_factory=list)
    finished_traces: list[str] = field(default_factory=list)
    last_log_seq: int = 0
    event_count: int = 0


def traces_needing_history(events: Sequence[ProjectedEvent]) -> set[str]:
    """Traces whose first event in the batch continues an earlier part.

    Their next expected trace_seq must come from the already-projected log.
    """
    seen: set[str] = set()
    needed: set[str] = set()
    for event in events:
        if event.trace_id not in seen:
            seen.add(event.trace_id)
            if event.trace_seq != 0:
                needed.add(event.trace_id)
    return needed


def fold_events(
    events: Iterable[ProjectedEvent],
    expected_seq: Mapping[str, int] | None = None,
    *,
    bad_hashes: frozenset[int] = frozenset(),
    skip: frozenset[int] = frozenset(),
    projections: Collection[str] = PROJECTION_NAMES,
) -> BatchWrites:
    """Check and fold ``events`` (ascending log_seq) into one batch of writes.

    ``expected_seq`` gives the next trace_seq for traces that began before the
    batch (see :func:`traces_needing_history`); others must start at 0.
    ``bad_hashes`` are the log_seqs whose stored payload failed its hash
    check (spec 8.3 step 1); the store checks, the fold refuses. Events whose
    log_seq is in ``skip`` (an operator's audited decision) advance the cursor
    and the trace tracker but write nothing. Only the writes of the named
    ``projections`` are computed (a worker folds for its own projection).
    """
    tracker: dict[str, int] = dict(expected_seq or {})
    out = BatchWrites()
    nodes = out.nodes
    edges = out.edges
    graph = CONTEXT_GRAPH in projections
    summaries = TRACE_SUMMARY in projections
    policies = POLICY_EVAL_INDEX in projections
    precedents = PRECEDENT_INDEX in projections
    for event in events:
        if event.log_seq in skip:
            tracker[event.trace_id] = event.trace_seq + 1
            out.last_log_seq = event.log_seq
            out.event_count += 1
            continue
        if event.log_seq in bad_hashes:
            raise ConflictError(
                f"Payload hash mismatch at log_seq {event.log_seq}",
                details={"log_seq": event.log_seq, "event_id": event.event_id},
            )
        expected = tracker.get(event.trace_id, 0)
        if event.trace_seq != expected:
            raise EventSequenceInvalidError(
                f"Trace {event.trace_id} expected trace_seq {expected}, got {event.trace_seq}",
                details={"log_seq": event.log_seq},
            )
        tracker[event.trace_id] = expected + 1
        if graph:
            event_nodes, event_edges = graph_writes(event, nodes)
            for node in event_nodes:
                if node.node_id not in nodes:
                    nodes[node.node_id] = node
            for edge in event_edges:
                if edge.edge_id not in edges:
                    edges[edge.edge_id] = edge
        if summaries:
            summary = summary_write(event)
            if isinstance(summary, TraceSummaryRow):
                out.summary_starts.append(summary)
            elif summary is not None:
                out.summary_finishes.append(summary)
        if policies:
            policy_row = policy_eval_row(event)
            if policy_row is not None:
                out.policy_rows.append(policy_row)
        if precedents and event.event_type == TRACE_FINISHED:
            out.finished_traces.append(event.trace_id)
        out.last_log_seq = event.log_seq
        out.event_count += 1
    return out
