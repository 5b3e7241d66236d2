"""Trace summary reads (spec 10.2)."""

from __future__ import annotations

from dataclasses import dataclass

from decisiongraph.core.errors import NotFoundError
from decisiongraph.projections.rows import TRACE_SUMMARY
from decisiongraph.query.limits import ensure_current
from decisiongraph.store.protocol import EventStore


@dataclass(frozen=True, slots=True)
class TraceSummary:
    trace_id: str
    workflow: str
    title: str
    primary_entity_type: str
    primary_entity_id: str
    started_at: str
    finished_at: str | None
    outcome: str | None
    event_count: int
    last_log_seq: int


def get_trace_summary(store: EventStore, tenant_id: str, trace_id: str) -> TraceSummary:
    ensure_current(store, tenant_id, TRACE_SUMMARY)
    row = store.get_summary(tenant_id, trace_id)
    if row is None:
        raise NotFoundError(f"Trace '{trace_id}' has no summary", details={"trace_id": trace_id})
    return TraceSummary(
        trace_id=row.trace_id,
        workflow=row.workflow,
        title=row.title,
        primary_entity_type=row.primary_entity_type or "",
        primary_entity_id=row.primary_entity_id or "",
        started_at=row.started_at,
        finished_at=row.finished_at,
        outcome=row.outcome,
        event_count=row.event_count,
        last_log_seq=row.last_log_seq,
    )
