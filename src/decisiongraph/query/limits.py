"""Query limits of spec section 10 and the staleness guard."""

from __future__ import annotations

from typing import Final

from decisiongraph.core.errors import ProjectionOutOfDateError
from decisiongraph.store.protocol import EventStore

MAX_QUERY_LIMIT: Final = 10_000
MAX_GRAPH_DEPTH: Final = 10


def ensure_current(store: EventStore, tenant_id: str) -> None:
    """Projection-backed reads refuse to answer from a stale projection (8.9)."""
    cursor = store.projection_cursor(tenant_id)
    last = store.get_last_log_seq(tenant_id)
    if cursor < last:
        raise ProjectionOutOfDateError(
            f"Projections are at log_seq {cursor}, the log is at {last}",
            details={"projected_last_seq": cursor, "event_log_last_seq": last},
        )
