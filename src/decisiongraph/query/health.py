"""Projection health (spec 10.6): never raises for staleness, it reports it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from decisiongraph.projections.digests import Digests
from decisiongraph.store.protocol import EventStore


@dataclass(frozen=True, slots=True)
class ProjectionHealth:
    event_count: int
    trace_count: int
    event_log_last_seq: int
    projected_last_seq: int
    pending_events: int
    is_stale: bool
    digests: Digests | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "event_count": self.event_count,
            "trace_count": self.trace_count,
            "event_log_last_seq": self.event_log_last_seq,
            "projected_last_seq": self.projected_last_seq,
            "pending_events": self.pending_events,
            "is_stale": self.is_stale,
            "digests": None if self.digests is None else self.digests.as_dict(),
        }


def get_projection_health(
    store: EventStore, tenant_id: str, include_digests: bool = False
) -> ProjectionHealth:
    stats = store.log_stats(tenant_id)
    cursor = store.projection_cursor(tenant_id)
    return ProjectionHealth(
        event_count=stats.event_count,
        trace_count=stats.trace_count,
        event_log_last_seq=stats.last_log_seq,
        projected_last_seq=cursor,
        pending_events=max(stats.last_log_seq - cursor, 0),
        is_stale=cursor < stats.last_log_seq,
        digests=store.digests(tenant_id) if include_digests else None,
    )
