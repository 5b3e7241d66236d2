"""Health of each (tenant, projection): position, lag, status, owner, error.

Status, in order of precedence: ``rebuilding`` (an online rebuild runs),
``failed`` (an open dead letter holds the projection), ``healthy`` (no lag),
``catching_up`` (lag, and a live lease: a worker is on it), ``stalled`` (lag
and nobody working on it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from decisiongraph.core.clock import Clock, parse_timestamp, system_clock
from decisiongraph.projections.rows import PROJECTION_NAMES
from decisiongraph.store.sql_base import SqlEventStore

HEALTHY = "healthy"
CATCHING_UP = "catching_up"
STALLED = "stalled"
FAILED = "failed"
REBUILDING = "rebuilding"


@dataclass(frozen=True, slots=True)
class ProjectionStatus:
    tenant_id: str
    projection: str
    cursor: int
    head: int
    lag_events: int
    lag_seconds: float
    status: str
    owner: str | None
    last_error: str | None
    open_dead_letters: int
    updated_at: str | None
    rebuild_position: int | None = None  # shadow cursor while an online rebuild runs

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _seconds_since(stamp: str | None, now: datetime) -> float:
    if stamp is None:
        return 0.0
    return max((now - parse_timestamp(stamp)).total_seconds(), 0.0)


def projection_statuses(
    store: SqlEventStore, tenant_id: str, *, clock: Clock = system_clock
) -> list[ProjectionStatus]:
    """One status per projection of ``tenant_id``."""
    now = clock()
    head = store.get_last_log_seq(tenant_id)
    cursors = store.projection_cursors(tenant_id)
    updated = store.cursor_updated_at(tenant_id)
    states = store.projection_states(tenant_id)
    leases = store.leases(tenant_id)
    open_letters: dict[str, int] = {}
    for letter in store.dead_letters(tenant_id, status="open"):
        open_letters[letter.projection_name] = open_letters.get(letter.projection_name, 0) + 1
    oldest_pending: dict[int, float] = {}
    out: list[ProjectionStatus] = []
    for name in PROJECTION_NAMES:
        cursor = cursors[name]
        lag = max(head - cursor, 0)
        lag_seconds = 0.0
        if lag:
            if cursor not in oldest_pending:
                oldest_pending[cursor] = _seconds_since(
                    store.recorded_at(tenant_id, cursor + 1), now
                )
            lag_seconds = oldest_pending[cursor]
        state = states.get(name)
        lease = leases.get(name)
        live_owner = lease.owner if lease is not None and lease.expires_in > 0 else None
        rebuild_position = None
        if state is not None and state.rebuilding:
            status = REBUILDING
            rebuild_position = store.shadow_cursor(tenant_id, name)
        elif open_letters.get(name):
            status = FAILED
        elif lag == 0:
            status = HEALTHY
        elif live_owner is not None:
            status = CATCHING_UP
        else:
            status = STALLED
        out.append(
            ProjectionStatus(
                tenant_id=tenant_id,
                projection=name,
                cursor=cursor,
                head=head,
                lag_events=lag,
                lag_seconds=round(lag_seconds, 3),
                status=status,
                owner=live_owner,
                last_error=state.last_error if state is not None else None,
                open_dead_letters=open_letters.get(name, 0),
                updated_at=updated.get(name),
                rebuild_position=rebuild_position,
            )
        )
    return out
