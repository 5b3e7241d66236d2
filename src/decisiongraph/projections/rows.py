"""Projection rows: the records every projection fold emits and stores keep.

Field names are the column names, and the digest dictionaries are built from
them, so a row is the single definition of what a projection holds. They are
named tuples: cheap to build by the million and to fill from a DB row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final, NamedTuple

from decisiongraph.core.errors import InvalidArgumentError

CONTEXT_GRAPH: Final = "context_graph"
TRACE_SUMMARY: Final = "trace_summary"
PRECEDENT_INDEX: Final = "precedent_index"
POLICY_EVAL_INDEX: Final = "policy_eval_index"
PROJECTION_NAMES: Final = (CONTEXT_GRAPH, TRACE_SUMMARY, PRECEDENT_INDEX, POLICY_EVAL_INDEX)


def check_projection_names(
    names: Iterable[str], valid: Sequence[str] = PROJECTION_NAMES
) -> tuple[str, ...]:
    """The named projections in ``valid``'s order, or ``DG_ERR_INVALID_ARGUMENT``
    listing the valid ones: an unknown name is a caller's typo, never a
    projection that merely has nothing yet. (A remote client passes the
    server's projections as ``valid``.)"""
    wanted = (names,) if isinstance(names, str) else tuple(names)
    unknown = [name for name in wanted if name not in valid]
    if unknown or not wanted:
        what = (
            f"Unknown projection(s) {', '.join(map(repr, unknown))}"
            if unknown
            else "No projection named"
        )
        raise InvalidArgumentError(
            f"{what}; valid: {', '.join(valid)}",
            details={"unknown": unknown, "valid": list(valid)},
        )
    return tuple(name for name in valid if name in wanted)


# The tables each projection owns (rows of every tenant, keyed by tenant_id).
PROJECTION_TABLES: Final = {
    CONTEXT_GRAPH: ("dg_cg_edges", "dg_cg_nodes"),
    TRACE_SUMMARY: ("dg_trace_summary",),
    PRECEDENT_INDEX: ("dg_precedent_index",),
    POLICY_EVAL_INDEX: ("dg_policy_eval_index",),
}


class NodeRow(NamedTuple):
    node_id: str
    node_type: str
    trace_id: str
    log_seq: int
    created_at: str

    def digest_dict(self) -> dict[str, Any]:
        return {
            "attrs": {},
            "created_at": self.created_at,
            "log_seq": self.log_seq,
            "node_id": self.node_id,
            "node_type": self.node_type,
            "trace_id": self.trace_id,
        }


class EdgeRow(NamedTuple):
    edge_id: str
    edge_type: str
    from_node_id: str
    to_node_id: str
    trace_id: str
    log_seq: int
    created_at: str

    def digest_dict(self) -> dict[str, Any]:
        return {
            "attrs": {},
            "created_at": self.created_at,
            "edge_id": self.edge_id,
            "edge_type": self.edge_type,
            "from_node_id": self.from_node_id,
            "log_seq": self.log_seq,
            "to_node_id": self.to_node_id,
            "trace_id": self.trace_id,
        }


class TraceSummaryRow(NamedTuple):
    trace_id: str
    workflow: str
    title: str
    primary_entity_type: str | None
    primary_entity_id: str | None
    outcome: str | None
    started_at: str
    finished_at: str | None
    event_count: int
    last_log_seq: int

    def digest_dict(self) -> dict[str, Any]:
        return {
            "event_count": self.event_count,
            "finished_at": self.finished_at,
            "last_log_seq": self.last_log_seq,
            "outcome": self.outcome,
            "primary_entity_id": self.primary_entity_id,
            "primary_entity_type": self.primary_entity_type,
            "started_at": self.started_at,
            "title": self.title,
            "trace_id": self.trace_id,
            "workflow": self.workflow,
        }


class TraceFinish(NamedTuple):
    """The summary update a TraceFinished applies to an existing row."""

    trace_id: str
    outcome: str
    finished_at: str
    log_seq: int


class PolicyEvalRow(NamedTuple):
    index_id: str
    trace_id: str
    policy_id: str
    policy_version: str
    log_seq: int
    created_at: str

    def digest_dict(self) -> dict[str, Any]:
        """For comparing live rows with a rebuild's; no spec digest covers
        this index (8.6)."""
        return self._asdict()


class PrecedentRow(NamedTuple):
    source_event_id: str
    log_seq: int
    trace_id: str
    policy_id: str
    policy_version: str
    exception_id: str | None
    primary_entity_type: str | None
    primary_entity_system: str | None
    primary_entity_id: str | None

    def digest_dict(self) -> dict[str, Any]:
        return {
            "exception_id": self.exception_id,
            "log_seq": self.log_seq,
            "policy_id": self.policy_id,
            "policy_version": self.policy_version,
            "primary_entity_id": self.primary_entity_id,
            "primary_entity_system": self.primary_entity_system,
            "primary_entity_type": self.primary_entity_type,
            "source_event_id": self.source_event_id,
            "trace_id": self.trace_id,
        }
