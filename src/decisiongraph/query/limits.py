"""Query limits of spec section 10 and the staleness guard."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Final

from decisiongraph.core.errors import ProjectionOutOfDateError
from decisiongraph.store.protocol import EventStore

MAX_QUERY_LIMIT: Final = 10_000
MAX_GRAPH_DEPTH: Final = 10


# The head a read may settle for (see reading_as_of); None: the head now.
_AS_OF: ContextVar[int | None] = ContextVar("decisiongraph_read_as_of", default=None)


@contextmanager
def reading_as_of(log_seq: int) -> Iterator[None]:
    """Inside, projection-backed reads accept projections that have applied
    ``log_seq`` (the head when a request began and waited for them) rather
    than the head now: under a steady stream of appends the head moves on
    between any wait and the read, and a read that must match it would
    never be served."""
    token = _AS_OF.set(log_seq)
    try:
        yield
    finally:
        _AS_OF.reset(token)


def ensure_current(store: EventStore, tenant_id: str, *projections: str) -> None:
    """Projection-backed reads refuse to answer from a stale projection (8.9).

    Only the projections the read uses are checked, so one lagging
    projection does not block reads of the others. The error names those
    behind (``details["projections"]``; an operator looks at them, not at
    the current ones the read also uses) and the head they lag behind.
    """
    cursors = store.projection_cursors(tenant_id)
    bar = _AS_OF.get()
    last = store.get_last_log_seq(tenant_id) if bar is None else bar
    behind = [name for name in projections if cursors[name] < last]
    if behind:
        cursor = min(cursors[name] for name in behind)
        where = ", ".join(f"{name} at log_seq {cursors[name]}" for name in behind)
        raise ProjectionOutOfDateError(
            f"Projection{'s' if len(behind) > 1 else ''} {where}; the log is at {last}",
            details={
                "projected_last_seq": cursor,
                "event_log_last_seq": last,
                "projections": behind,
            },
        )
