"""Trace summary reads (spec 10.2) and the trace list (an addition)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass

from decisiongraph.core.errors import InvalidArgumentError, NotFoundError
from decisiongraph.projections.rows import TRACE_SUMMARY, TraceSummaryRow
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
    return summary_of(row)


def summary_of(row: TraceSummaryRow) -> TraceSummary:
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


MAX_TRACE_PAGE = 1000


@dataclass(frozen=True, slots=True)
class TraceFilter:
    """Which traces a list returns; ``since`` keeps those changed after a log_seq."""

    workflow: str | None = None
    outcome: str | None = None
    entity_type: str | None = None
    entity_id: str | None = None
    since: int | None = None


@dataclass(frozen=True, slots=True)
class TracePage:
    """One page of traces, most recently changed first; pass ``next_cursor``
    back for the next page (None on the last)."""

    traces: list[TraceSummary]
    next_cursor: str | None


def encode_cursor(last_log_seq: int, trace_id: str) -> str:
    raw = json.dumps([last_log_seq, trace_id]).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii")


# Cursor positions are log_seqs: 64-bit in every backend. A forged cursor
# holding a larger number must be refused here, not overflow a driver.
_INT64_MAX = 2**63 - 1


def decode_cursor(cursor: str) -> tuple[int, str]:
    """The (last_log_seq, trace_id) a cursor holds; anything else is refused.

    Cursors come back from callers, so every part is checked: a 64-bit
    log_seq >= 0 and a trace id text a backend can compare (no NUL, no lone
    surrogate).
    """
    malformed = InvalidArgumentError("Malformed cursor", details={"cursor": cursor[:200]})
    try:
        decoded = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
    except (ValueError, TypeError, UnicodeError, RecursionError) as exc:
        raise malformed from exc
    if not isinstance(decoded, list) or len(decoded) != 2:
        raise malformed
    seq, trace_id = decoded
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= _INT64_MAX:
        raise malformed
    if not isinstance(trace_id, str) or "\x00" in trace_id:
        raise malformed
    try:
        trace_id.encode("utf-8")  # a lone surrogate no backend can compare
    except UnicodeEncodeError:
        raise malformed from None
    return seq, trace_id


def list_traces(
    store: EventStore,
    tenant_id: str,
    filters: TraceFilter | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> TracePage:
    """A keyset page of trace summaries (last_log_seq DESC, trace_id ASC).

    Like every list of a live log it may shift while paged; keyset cursors
    never repeat or skip a trace that did not change meanwhile. Backed by
    the trace-summary projection, it refuses to answer from a stale one,
    as every projection-backed read does (8.9).
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_TRACE_PAGE:
        raise InvalidArgumentError(f"limit must be between 1 and {MAX_TRACE_PAGE}")
    wanted = filters or TraceFilter()
    if wanted.since is not None and (isinstance(wanted.since, bool) or wanted.since < 0):
        raise InvalidArgumentError("since must be a log_seq >= 0")
    after = decode_cursor(cursor) if cursor else None
    ensure_current(store, tenant_id, TRACE_SUMMARY)
    rows = store.list_summaries(
        tenant_id,
        workflow=wanted.workflow,
        outcome=wanted.outcome,
        entity_type=wanted.entity_type,
        entity_id=wanted.entity_id,
        since_log_seq=wanted.since,
        after=after,
        limit=limit + 1,
    )
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        next_cursor = encode_cursor(page[-1].last_log_seq, page[-1].trace_id)
    return TracePage([summary_of(row) for row in page], next_cursor)


def iter_traces(
    store: EventStore,
    tenant_id: str,
    filters: TraceFilter | None = None,
    page_size: int = 100,
) -> Iterator[TraceSummary]:
    """Every matching trace, following the pages."""
    cursor = None
    while True:
        page = list_traces(store, tenant_id, filters, cursor, page_size)
        yield from page.traces
        cursor = page.next_cursor
        if cursor is None:
            return
