"""The seams every SQL backend fills in, shared by the SQL store mixins.

Both databases speak the same SQL for everything the store does (upserts,
window functions, row values), so statements are written once with ``?``
placeholders; a backend supplies connections, transactions, its tenant write
lock, a few dialect-specific lookups, and streaming.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from functools import lru_cache
from typing import Any

from decisiongraph.core.canonical_json import loads
from decisiongraph.core.clock import Clock, format_timestamp, system_clock
from decisiongraph.core.envelope import StoredEvent
from decisiongraph.core.errors import (
    DecisionGraphError,
    StorageError,
)
from decisiongraph.core.refs import ActorRef, SourceRef
from decisiongraph.projections.projected_event import ReplayedEvent
from decisiongraph.store.append_plan import AppendPlan, Row, TraceHead
from decisiongraph.store.columns import EVENT_COLUMNS
from decisiongraph.store.recent_batches import RecentBatches

Cursor = Any  # a DB-API cursor of the backend's driver
#: Runs one query (placeholders already the backend's) and yields its rows.
Streamer = Callable[[str, Sequence[Any]], Iterator[Sequence[Any]]]

EVENT_SELECT = "SELECT " + ", ".join(EVENT_COLUMNS) + " FROM dg_event_log"
NODE_COLS = "node_id, node_type, trace_id, log_seq, created_at"
EDGE_COLS = "edge_id, edge_type, from_node_id, to_node_id, trace_id, log_seq, created_at"
SUMMARY_COLS = (
    "trace_id, workflow, title, primary_entity_type, primary_entity_id, outcome, "
    "started_at, finished_at, event_count, last_log_seq"
)
PRECEDENT_COLS = (
    "source_event_id, log_seq, trace_id, policy_id, policy_version, exception_id, "
    "primary_entity_type, primary_entity_system, primary_entity_id"
)
# Row-value IN lists stay well below every driver's parameter limit.
LOOKUP_CHUNK = 400


@lru_cache(maxsize=4096)
def _source(producer_id: str, system: str, subsystem: str | None) -> SourceRef:
    return SourceRef(producer_id, system, subsystem)


@lru_cache(maxsize=4096)
def _actor(actor_type: str, actor_id: str) -> ActorRef:
    return ActorRef(actor_type, actor_id)


@lru_cache(maxsize=4096)
def _tags(text: str) -> tuple[str, ...]:
    return tuple(json.loads(text))


def event_from_row(row: Sequence[Any]) -> StoredEvent:
    """Decode a row selected with ``EVENT_SELECT``.

    Sources, actors and tag lists repeat across events, so their immutable
    decoded forms are shared; replays decode millions of rows.
    """
    try:
        payload = loads(row[17])
        tags = () if row[19] == "[]" else _tags(row[19])
    except (ValueError, TypeError) as exc:
        raise StorageError(f"Corrupt stored JSON at log_seq {row[1]}: {exc}") from exc
    return StoredEvent(  # positional (field order): replays decode millions of rows
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        row[6],
        row[7],
        _source(row[8], row[9], row[10]),
        _actor(row[11], row[12]),
        row[15],
        payload,
        row[18],
        row[13],
        row[14],
        row[16],
        tags,
        row[20],
    )


# What catch-up reads of each event: the fields the folds use, then the
# stored payload and its hash (checked before the fold sees the event).
REPLAY_SELECT = (
    "SELECT log_seq, event_id, trace_id, trace_seq, event_type, occurred_at, "
    "actor_type, actor_id, payload_json, payload_hash FROM dg_event_log"
)


def replayed_from_row(row: Sequence[Any], *, decode_payload: bool = True) -> ReplayedEvent:
    """Decode a row selected with ``REPLAY_SELECT`` (hash already checked);
    without ``decode_payload`` the payload is left empty (a row that failed
    its hash check, which nothing folds)."""
    if not decode_payload:
        payload: dict[str, Any] = {}
    else:
        try:
            payload = loads(row[8])
        except (ValueError, TypeError) as exc:
            raise StorageError(f"Corrupt stored JSON at log_seq {row[0]}: {exc}") from exc
    return ReplayedEvent(
        row[0], row[1], row[2], row[3], row[4], row[5], _actor(row[6], row[7]), payload
    )


def next_window(after: int, count: int, until: int | None = None) -> int:
    """The last log_seq that the next ``count`` events after ``after`` can have.

    log_seq is gap-free per tenant, so they lie in ``(after, after + count]``.
    Saying so in the query keeps PostgreSQL on the index even when its
    statistics are stale (after a bulk load it may otherwise fetch the whole
    tail of the log and sort it, twenty times slower).
    """
    bound = after + count
    return bound if until is None else min(bound, until)


def chunks(items: Sequence[Any], size: int = LOOKUP_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class ProjectionDeferred(Exception):
    """An inline projection without a savepoint failed, leaving its
    transaction half-written: the append is to be redone without it (the
    projection's catch-up then reports the failure)."""


class SqlBackend:
    """The seams a backend fills in, and the statement helpers built on them."""

    placeholder = "?"

    def __init__(self, url: str, clock: Clock = system_clock) -> None:
        self._url = url
        self._clock = clock
        self._append_listeners: list[Callable[[str, int], None]] = []
        self._backlog_listeners: list[Callable[[str, int], None]] = []
        self._recent_batches = RecentBatches()

    def share_batch_cache(self, cache: RecentBatches) -> None:
        """Share ``cache`` of recently decoded log batches with other stores.

        The workers of one process each open their own store on PostgreSQL;
        with one cache among them a batch is read and decoded once, not once
        per projection. Only stores of one database may share a cache.
        """
        self._recent_batches = cache

    def add_append_listener(self, listener: Callable[[str, int], None]) -> None:
        """Call ``listener(tenant_id, last_log_seq)`` after each committed append.

        In-process wake-ups for projection workers; other processes learn of
        appends through the backend's notifications (PostgreSQL NOTIFY).
        """
        self._append_listeners.append(listener)

    def remove_append_listener(self, listener: Callable[[str, int], None]) -> None:
        if listener in self._append_listeners:
            self._append_listeners.remove(listener)

    def add_backlog_listener(self, listener: Callable[[str, int], None]) -> None:
        """Call ``listener(tenant_id, last_log_seq)`` after each committed
        append that left projection work behind (one not projected inline).

        Projection workers' wake-ups: an append projected in its own
        transaction leaves them nothing to do, and waking four threads for
        nothing after every append costs the writer they then compete with.
        """
        self._backlog_listeners.append(listener)

    def remove_backlog_listener(self, listener: Callable[[str, int], None]) -> None:
        if listener in self._backlog_listeners:
            self._backlog_listeners.remove(listener)

    def _announce(self, cur: Cursor, tenant_id: str, last_log_seq: int) -> None:
        """Inside the append transaction: tell other processes (on commit)."""

    # -- hooks for backends ------------------------------------------------
    def _write(self) -> AbstractContextManager[Cursor]:
        """A write transaction (committed on success, rolled back on error)."""
        raise NotImplementedError

    def _read(self) -> AbstractContextManager[Cursor]:
        """A cursor for reads, consistent for the duration of the block."""
        raise NotImplementedError

    def _append_txn(self) -> AbstractContextManager[Cursor]:
        """The write transaction of an append (a backend may add caching)."""
        return self._write()

    def _savepoint(self, cur: Cursor) -> AbstractContextManager[None]:
        raise NotImplementedError

    def _stage_append(
        self, tenant_id: str, plan: AppendPlan, heads: Mapping[str, TraceHead], projected: bool
    ) -> None:
        """Inside the append transaction: what it wrote, for a backend's cache.

        ``heads`` are the touched traces' last events after the append.
        """

    def _projections_current(self, tenant_id: str, log_seq: int) -> bool:
        """Whether every projection is known, without a query, to stand at ``log_seq``."""
        return False

    def _lock_log_head(self, cur: Cursor, tenant_id: str) -> tuple[int, str]:
        """Take the tenant's append lock; return (last_log_seq, chain_hash)."""
        raise NotImplementedError

    def _lock_projections(self, cur: Cursor, tenant_id: str, names: Sequence[str]) -> None:
        """Serialize appliers of each named projection of a tenant.

        A no-op where write transactions are serial already (SQLite).
        """

    def _trace_heads(
        self, cur: Cursor, tenant_id: str, trace_ids: Sequence[str]
    ) -> dict[str, TraceHead]:
        raise NotImplementedError

    def _insert_events(self, cur: Cursor, rows: Sequence[Row]) -> None:
        raise NotImplementedError

    @contextmanager
    def _event_sink(self, cur: Cursor, expected: int) -> Iterator[Callable[[Row], None]]:
        """Where an append's rows go as they are planned: by default they are
        gathered and inserted together once the whole batch is planned."""
        rows: list[Row] = []
        yield rows.append
        if rows:
            self._insert_events(cur, rows)

    #: Whether the database server does the writing while the driver waits
    #: (PostgreSQL), rather than the driver itself (SQLite).
    server_side_writes = False
    #: A long catch-up commits once this many events are applied (0: after
    #: every batch).
    catch_up_commit_events = 0

    @contextmanager
    def _reader(self) -> Iterator[Callable[[], AbstractContextManager[Cursor]] | None]:
        """Cursors on a second connection, for reading the log while this one
        commits; None where no reader can run beside a writer."""
        yield None

    @contextmanager
    def _bulk_writes(self) -> Iterator[None]:
        """Around a long catch-up: a backend may give its writer more memory."""
        yield

    @contextmanager
    def _pipelined(self) -> Iterator[None]:
        """Statements in the block may be sent before earlier ones are answered
        (PostgreSQL's pipeline mode); the block ends with every answer in."""
        yield

    def _stream(self, sql: str, params: Sequence[Any]) -> Iterator[Sequence[Any]]:
        """Yield rows of a long query without loading them all."""
        raise NotImplementedError

    def _snapshot(self) -> AbstractContextManager[Streamer]:
        """Queries that all see one committed state of the database, however
        many commits happen meanwhile (rows streamed, memory bounded)."""
        raise NotImplementedError

    def _translate_error(self, exc: Exception) -> DecisionGraphError | None:
        """Map a driver error to a domain error, or None if not a DB error."""
        raise NotImplementedError

    def _sql(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    def _x(self, cur: Cursor, sql: str, params: Sequence[Any] = ()) -> Cursor:
        cur.execute(self._sql(sql), params)
        return cur

    def _many(self, cur: Cursor, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            cur.executemany(self._sql(sql), rows)

    # -- set-based writes (a backend may do them in fewer round trips) -------
    def _insert_rows(
        self,
        cur: Cursor,
        table: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        conflict: str = "",
    ) -> None:
        """INSERT ``rows`` in order; ``conflict`` is an optional ON CONFLICT clause."""
        if rows:
            sql = self._sql(_insert_sql(table, tuple(columns), conflict))
            if len(rows) == 1:  # the inline projection of a single append
                cur.execute(sql, rows[0])
            else:
                cur.executemany(sql, rows)

    def _delete_traces(
        self, cur: Cursor, table: str, tenant_id: str, trace_ids: Sequence[str]
    ) -> None:
        """Delete a tenant's rows of ``table`` belonging to ``trace_ids``."""
        self._many(
            cur,
            f"DELETE FROM {table} WHERE tenant_id = ? AND trace_id = ?",
            [(tenant_id, trace_id) for trace_id in trace_ids],
        )

    def _finish_summaries(
        self, cur: Cursor, table: str, rows: Sequence[tuple[Any, str, int, str, str]]
    ) -> None:
        """Apply (outcome, finished_at, log_seq, tenant_id, trace_id) finishes."""
        self._many(
            cur,
            f"UPDATE {table} SET outcome = ?, finished_at = ?, "
            "event_count = event_count + 1, last_log_seq = ? WHERE tenant_id = ? AND trace_id = ?",
            rows,
        )

    # -- public ------------------------------------------------------------
    @property
    def url(self) -> str:
        return self._url

    def close(self) -> None:
        raise NotImplementedError

    def connection_lost(self) -> bool:
        """Whether this store's connection is gone for good (only a new store
        helps); a backend whose connection cannot be lost says False."""
        return False

    def cancel(self) -> None:
        """Interrupt the statement this store's connection runs, from another
        thread; safe when nothing runs, and never raises.

        A supervisor that stops calls it on its workers' stores when a batch
        has not committed within the grace period: a statement waiting on a
        lock would otherwise keep the worker (and its lease) past the stop
        deadline. The interrupted statement fails with a transient error and
        its transaction rolls back. A backend that cannot interrupt lets the
        statement run to its end.
        """

    def _now(self) -> str:
        return format_timestamp(self._clock())

    def _event_filter(
        self,
        tenant_id: str,
        since_log_seq: int | None,
        until_log_seq: int | None,
        event_type: str | None,
        trace_id: str | None,
    ) -> tuple[str, list[Any]]:
        clauses = ["tenant_id = ?"]
        params: list[Any] = [tenant_id]
        if since_log_seq is not None:
            clauses.append("log_seq > ?")
            params.append(since_log_seq)
        if until_log_seq is not None:
            clauses.append("log_seq <= ?")
            params.append(until_log_seq)
        if event_type is not None:
            clauses.append("event_type = ?")
            params.append(event_type)
        if trace_id is not None:
            clauses.append("trace_id = ?")
            params.append(trace_id)
        return " WHERE " + " AND ".join(clauses), params

    def _log_head_seq(self, cur: Cursor, tenant_id: str) -> int:
        """The tenant's last log_seq (0 before its first event)."""
        row = self._x(
            cur, "SELECT last_log_seq FROM dg_log_head WHERE tenant_id = ?", (tenant_id,)
        ).fetchone()
        return 0 if row is None else int(row[0])

    def applied_migrations(self) -> set[int]:
        """Versions recorded in ``schema_migrations`` (readiness checks)."""
        with self._read() as cur:
            return {int(row[0]) for row in self._x(cur, "SELECT version FROM schema_migrations")}

    # -- provided by the projector, used by the append path -----------------
    def _project_inline(
        self,
        cur: Cursor,
        tenant_id: str,
        head_before: int,
        events: Sequence[StoredEvent],
        trace_heads: Mapping[str, TraceHead],
        *,
        guarded: bool = True,
    ) -> bool:
        raise NotImplementedError

    def project_pending(
        self,
        tenant_id: str,
        *,
        batch_size: int = 1000,
        until_log_seq: int | None = None,
        projections: Sequence[str] | None = None,
        max_batches: int | None = None,
    ) -> int:
        raise NotImplementedError


@lru_cache(maxsize=256)
def _insert_sql(table: str, columns: tuple[str, ...], conflict: str) -> str:
    """The INSERT text for a table's rows (built once: the inline projection
    of every single append writes several)."""
    marks = ", ".join("?" for _ in columns)
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) {conflict}"
