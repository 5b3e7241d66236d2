"""Trace-summary writes (spec 8.5).

Only TraceStarted and TraceFinished touch a summary, so ``event_count`` is 1
for an open trace and 2 for a finished one. That is a frozen quirk: the
golden digests depend on it.
"""

from __future__ import annotations

from typing import Any

from decisiongraph.core import event_types as et
from decisiongraph.projections.projected_event import ProjectedEvent
from decisiongraph.projections.rows import TraceFinish, TraceSummaryRow


def _entity_field(entity: Any, key: str) -> str | None:
    if not isinstance(entity, dict):
        return None
    value = entity.get(key)
    return value if value else None


def summary_write(event: ProjectedEvent) -> TraceSummaryRow | TraceFinish | None:
    """The summary insert (TraceStarted) or update (TraceFinished), if any."""
    payload = event.payload
    if event.event_type == et.TRACE_STARTED:
        entity = payload.get("primary_entity")
        return TraceSummaryRow(
            trace_id=event.trace_id,
            workflow=payload.get("workflow", ""),
            title=payload.get("title", ""),
            primary_entity_type=_entity_field(entity, "entity_type"),
            primary_entity_id=_entity_field(entity, "entity_id"),
            outcome=None,
            started_at=event.occurred_at,
            finished_at=None,
            event_count=1,
            last_log_seq=event.log_seq,
        )
    if event.event_type == et.TRACE_FINISHED:
        return TraceFinish(
            trace_id=event.trace_id,
            outcome=payload.get("outcome", "success"),
            finished_at=event.occurred_at,
            log_seq=event.log_seq,
        )
    return None
