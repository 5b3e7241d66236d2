"""Event-log queries (spec 10.1): no staleness check, they read the log."""

from __future__ import annotations

from decisiongraph.core.envelope import StoredEvent
from decisiongraph.core.errors import InvalidArgumentError, NotFoundError
from decisiongraph.query.limits import MAX_QUERY_LIMIT
from decisiongraph.store.protocol import EventStore


def _check_limit(limit: int | None) -> None:
    if limit is not None and (limit <= 0 or limit > MAX_QUERY_LIMIT):
        raise InvalidArgumentError(f"limit must be between 1 and {MAX_QUERY_LIMIT}")


def get_trace_events(
    store: EventStore,
    tenant_id: str,
    trace_id: str,
    since_trace_seq: int | None = None,
    limit: int | None = None,
) -> list[StoredEvent]:
    """The trace's events in trace_seq order; an empty result is NOT_FOUND."""
    _check_limit(limit)
    if since_trace_seq is not None and since_trace_seq < 0:
        raise InvalidArgumentError("since_trace_seq must be >= 0")
    events = store.get_trace_events(tenant_id, trace_id, since_trace_seq, limit)
    if not events:
        raise NotFoundError(
            f"Trace '{trace_id}' has no matching events", details={"trace_id": trace_id}
        )
    return events


def list_events(
    store: EventStore,
    tenant_id: str,
    since_log_seq: int | None = None,
    until_log_seq: int | None = None,
    event_type: str | None = None,
    limit: int | None = None,
) -> list[StoredEvent]:
    """Events in log_seq order; ``since`` exclusive, ``until`` inclusive."""
    _check_limit(limit)
    for name, value in (("since_log_seq", since_log_seq), ("until_log_seq", until_log_seq)):
        if value is not None and value < 0:
            raise InvalidArgumentError(f"{name} must be >= 0")
    if since_log_seq is not None and until_log_seq is not None and since_log_seq > until_log_seq:
        raise InvalidArgumentError("since_log_seq must not exceed until_log_seq")
    return store.list_events(tenant_id, since_log_seq, until_log_seq, event_type, None, limit)
