"""Query limits of spec section 10 and the staleness guard."""

from __future__ import annotations

from typing import Final

from decisiongraph.core.errors import ProjectionOutOfDateError
from decisiongraph.store.protocol import EventStore

MAX_QUERY_LIMIT: Final = 10_000
MAX_GRAPH_DEPTH: Final = 10


def ensure_current(store: EventStore, tenant_id: str, *projections: str) -> None:
    """Projection-backed reads refuse to answer from a stale projection (8.9).

    Only the projections the read uses are checked, so one lagging
    projection does not block reads of the others.
    """
    cursors = store.projection_cursors(tenant_id)
    cursor = min(cursors[name] for name in projections)
    last = store.get_last_log_seq(tenant_id)
    if cursor < last:
        raise ProjectionOutOfDateError(
            f"Projections {', '.join(projections)} are at log_seq {cursor}, the log is at {last}",
            details={"projected_last_seq": cursor, "event_log_last_seq": last},
        )
