"""SQL shared by the SQLite and PostgreSQL backends.

Both databases speak the same SQL for everything the store does (upserts,
window functions, row values), so the statements live here once, written
with ``?`` placeholders; a backend only supplies connections, transactions,
its tenant write lock, a few lookups that differ in dialect, and streaming.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from decisiongraph.core.clock import Clock, format_timestamp, system_clock
from decisiongraph.core.envelope import EventEnvelope, StoredEvent
from decisiongraph.core.errors import (
    DecisionGraphError,
    InvalidArgumentError,
    StorageError,
)
from decisiongraph.core.event_types import TRACE_FINISHED
from decisiongraph.core.hashing import GENESIS_CHAIN_HASH
from decisiongraph.core.refs import ActorRef, SourceRef
from decisiongraph.core.validation import ValidatedEvent, validate_envelope
from decisiongraph.projections.batch import BatchWrites, fold_events, traces_needing_history
from decisiongraph.projections.digests import (
    Digests,
    array_digest,
    combine,
    context_graph_digest,
)
from decisiongraph.projections.policy_index import PRECEDENT_SOURCE_TYPES, precedent_rows
from decisiongraph.projections.rows import (
    PROJECTION_NAMES,
    EdgeRow,
    NodeRow,
    PrecedentRow,
    TraceSummaryRow,
)
from decisiongraph.store.append_plan import (
    EVENT_COLUMNS,
    IdemKey,
    Row,
    TraceHead,
    idem_key,
    plan_append,
)
from decisiongraph.store.chain import CHAIN_FIELDS, ChainProblem, verify_rows
from decisiongraph.store.protocol import LogStats, PrecedentHitRow

Cursor = Any  # a DB-API cursor of the backend's driver

_EVENT_SELECT = "SELECT " + ", ".join(EVENT_COLUMNS) + " FROM dg_event_log"
_NODE_COLS = "node_id, node_type, trace_id, log_seq, created_at"
_EDGE_COLS = "edge_id, edge_type, from_node_id, to_node_id, trace_id, log_seq, created_at"
_SUMMARY_COLS = (
    "trace_id, workflow, title, primary_entity_type, primary_entity_id, outcome, "
    "started_at, finished_at, event_count, last_log_seq"
)
_PRECEDENT_COLS = (
    "source_event_id, log_seq, trace_id, policy_id, policy_version, exception_id, "
    "primary_entity_type, primary_entity_system, primary_entity_id"
)
# Row-value IN lists stay well below every driver's parameter limit.
LOOKUP_CHUNK = 400


def event_from_row(row: Sequence[Any]) -> StoredEvent:
    """Decode a row selected with ``_EVENT_SELECT``."""
    try:
        payload = json.loads(row[17])
        tags = json.loads(row[19])
    except (ValueError, TypeError) as exc:
        raise StorageError(f"Corrupt stored JSON at log_seq {row[1]}: {exc}") from exc
    return StoredEvent(
        tenant_id=row[0],
        log_seq=row[1],
        event_id=row[2],
        trace_id=row[3],
        trace_seq=row[4],
        event_type=row[5],
        occurred_at=row[6],
        recorded_at=row[7],
        source=SourceRef(row[8], row[9], row[10]),
        actor=ActorRef(row[11], row[12]),
        correlation_id=row[13],
        causation_event_id=row[14],
        idempotency_key=row[15],
        schema_version=row[16],
        payload=payload,
        payload_hash=row[18],
        tags=tuple(tags),
        chain_hash=row[20],
    )


def _chunks(items: Sequence[Any], size: int = LOOKUP_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class SqlEventStore:
    """Backend-neutral implementation of :class:`EventStore` over DB-API."""

    placeholder = "?"

    def __init__(self, url: str, clock: Clock = system_clock) -> None:
        self._url = url
        self._clock = clock

    # -- hooks for backends ------------------------------------------------
    def _write(self) -> AbstractContextManager[Cursor]:
        """A write transaction (committed on success, rolled back on error)."""
        raise NotImplementedError

    def _read(self) -> AbstractContextManager[Cursor]:
        """A cursor for reads, consistent for the duration of the block."""
        raise NotImplementedError

    def _savepoint(self, cur: Cursor) -> AbstractContextManager[None]:
        raise NotImplementedError

    def _lock_log_head(self, cur: Cursor, tenant_id: str) -> tuple[int, str]:
        """Take the tenant's append lock; return (last_log_seq, chain_hash)."""
        raise NotImplementedError

    def _lock_projections(self, cur: Cursor, tenant_id: str) -> None:
        """Serialize projectors of one tenant (no-op where writes are serial)."""

    def _trace_heads(self, cur: Cursor, tenant_id: str, trace_ids: Sequence[str]) -> dict[str, TraceHead]:
        raise NotImplementedError

    def _insert_events(self, cur: Cursor, rows: Sequence[Row]) -> None:
        raise NotImplementedError

    def _stream(self, sql: str, params: Sequence[Any]) -> Iterator[Sequence[Any]]:
        """Yield rows of a long query without loading them all."""
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

    # -- public ------------------------------------------------------------
    @property
    def url(self) -> str:
        return self._url

    def close(self) -> None:
        raise NotImplementedError

    def _now(self) -> str:
        return format_timestamp(self._clock())

    # -- append ------------------------------------------------------------
    def append(
        self, tenant_id: str, envelopes: Sequence[EventEnvelope], *, project: bool = False
    ) -> list[StoredEvent]:
        items: list[ValidatedEvent] = []
        for index, envelope in enumerate(envelopes):
            try:
                items.append(validate_envelope(envelope))
            except DecisionGraphError as exc:
                if len(envelopes) > 1:
                    exc.message = f"event {index}: {exc.message}"
                raise exc.with_details(index=index) from None
        if not items:
            return []
        recorded_at = self._now()
        projected = False
        try:
            with self._write() as cur:
                head = self._lock_log_head(cur, tenant_id)
                existing = self._find_existing(cur, tenant_id, [idem_key(item) for item in items])
                trace_ids = list(dict.fromkeys(item.envelope.trace_id for item in items))
                heads = self._trace_heads(cur, tenant_id, trace_ids)
                plan = plan_append(tenant_id, items, existing, heads, head, recorded_at)
                if plan.rows:
                    self._insert_events(cur, plan.rows)
                    self._x(
                        cur,
                        "UPDATE dg_log_head SET last_log_seq = ?, chain_hash = ? WHERE tenant_id = ?",
                        (plan.last_log_seq, plan.last_chain_hash, tenant_id),
                    )
                    if project:
                        projected = self._project_inline(
                            cur, tenant_id, head[0], plan.results, heads
                        )
        except DecisionGraphError:
            raise
        except Exception as exc:
            translated = self._translate_error(exc)
            if translated is None:
                raise
            if translated.code == "DG_ERR_STORAGE":
                translated = self._explain_storage_failure(tenant_id, items, translated)
            raise translated from exc
        if project and not projected:
            target = max(event.log_seq for event in plan.results)
            self.project_pending(tenant_id, until_log_seq=target)
        return plan.results

    def _explain_storage_failure(
        self, tenant_id: str, items: Sequence[ValidatedEvent], error: DecisionGraphError
    ) -> DecisionGraphError:
        """Name the event whose id already exists, the usual storage failure."""
        seen: set[str] = set()
        with self._read() as cur:
            for index, item in enumerate(items):
                event_id = item.envelope.event_id
                row = self._x(
                    cur,
                    "SELECT 1 FROM dg_event_log WHERE tenant_id = ? AND event_id = ?",
                    (tenant_id, event_id),
                ).fetchone()
                if row is not None or event_id in seen:
                    return StorageError(
                        f"event {index}: event_id '{event_id}' already exists",
                        details={"index": index, "event_id": event_id},
                    )
                seen.add(event_id)
        return error

    def _find_existing(
        self, cur: Cursor, tenant_id: str, keys: Sequence[IdemKey]
    ) -> dict[IdemKey, StoredEvent]:
        found: dict[IdemKey, StoredEvent] = {}
        unique = list(dict.fromkeys(keys))
        if len(unique) == 1:
            producer, key = unique[0]
            rows = self._x(
                cur,
                _EVENT_SELECT
                + " WHERE tenant_id = ? AND producer_id = ? AND idempotency_key = ?",
                (tenant_id, producer, key),
            ).fetchall()
        else:
            rows = []
            for chunk in _chunks(unique):
                marks = ", ".join("(?, ?)" for _ in chunk)
                params: list[Any] = [tenant_id]
                for producer, key in chunk:
                    params.extend((producer, key))
                rows.extend(
                    self._x(
                        cur,
                        _EVENT_SELECT
                        + f" WHERE tenant_id = ? AND (producer_id, idempotency_key) IN ({marks})",
                        params,
                    ).fetchall()
                )
        for row in rows:
            event = event_from_row(row)
            found[(event.source.producer_id, event.idempotency_key)] = event
        return found

    # -- log reads -----------------------------------------------------------
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

    def list_events(
        self,
        tenant_id: str,
        since_log_seq: int | None = None,
        until_log_seq: int | None = None,
        event_type: str | None = None,
        trace_id: str | None = None,
        limit: int | None = None,
    ) -> list[StoredEvent]:
        where, params = self._event_filter(
            tenant_id, since_log_seq, until_log_seq, event_type, trace_id
        )
        sql = _EVENT_SELECT + where + " ORDER BY log_seq"
        if limit is not None and limit >= 0:
            sql += " LIMIT ?"
            params.append(limit)
        with self._read() as cur:
            return [event_from_row(row) for row in self._x(cur, sql, params).fetchall()]

    def iter_event_batches(
        self,
        tenant_id: str,
        since_log_seq: int | None = None,
        until_log_seq: int | None = None,
        event_type: str | None = None,
        trace_id: str | None = None,
        batch_size: int = 1000,
    ) -> Iterator[list[StoredEvent]]:
        if batch_size <= 0:
            raise InvalidArgumentError("batch_size must be positive")
        after = since_log_seq
        while True:
            page = self.list_events(
                tenant_id, after, until_log_seq, event_type, trace_id, limit=batch_size
            )
            if not page:
                return
            yield page
            after = page[-1].log_seq
            if until_log_seq is not None and after >= until_log_seq:
                return

    def get_trace_events(
        self,
        tenant_id: str,
        trace_id: str,
        since_trace_seq: int | None = None,
        limit: int | None = None,
    ) -> list[StoredEvent]:
        sql = _EVENT_SELECT + " WHERE tenant_id = ? AND trace_id = ?"
        params: list[Any] = [tenant_id, trace_id]
        if since_trace_seq is not None:
            sql += " AND trace_seq > ?"
            params.append(since_trace_seq)
        sql += " ORDER BY trace_seq"
        if limit is not None and limit >= 0:
            sql += " LIMIT ?"
            params.append(limit)
        with self._read() as cur:
            return [event_from_row(row) for row in self._x(cur, sql, params).fetchall()]

    def get_last_log_seq(self, tenant_id: str) -> int:
        with self._read() as cur:
            row = self._x(
                cur, "SELECT last_log_seq FROM dg_log_head WHERE tenant_id = ?", (tenant_id,)
            ).fetchone()
        return 0 if row is None else int(row[0])

    def get_next_trace_seq(self, tenant_id: str, trace_id: str) -> int:
        with self._read() as cur:
            head = self._trace_heads(cur, tenant_id, [trace_id]).get(trace_id)
        return 0 if head is None else head[0] + 1

    def is_trace_finished(self, tenant_id: str, trace_id: str) -> bool:
        with self._read() as cur:
            head = self._trace_heads(cur, tenant_id, [trace_id]).get(trace_id)
        return head is not None and head[1] == TRACE_FINISHED

    def log_stats(self, tenant_id: str) -> LogStats:
        with self._read() as cur:
            row = self._x(
                cur,
                "SELECT COUNT(*), COUNT(DISTINCT trace_id), COALESCE(MAX(log_seq), 0) "
                "FROM dg_event_log WHERE tenant_id = ?",
                (tenant_id,),
            ).fetchone()
        return LogStats(int(row[0]), int(row[1]), int(row[2]))

    def tenants(self) -> list[str]:
        with self._read() as cur:
            rows = self._x(cur, "SELECT tenant_id FROM dg_log_head ORDER BY tenant_id").fetchall()
        return [row[0] for row in rows]

    def verify_chain(self, tenant_id: str) -> ChainProblem | None:
        with self._read() as cur:
            head_row = self._x(
                cur,
                "SELECT last_log_seq, chain_hash FROM dg_log_head WHERE tenant_id = ?",
                (tenant_id,),
            ).fetchone()
        head = None if head_row is None else (int(head_row[0]), str(head_row[1]))
        columns = list(dict.fromkeys([*CHAIN_FIELDS, "payload_json", "chain_hash"]))
        sql = self._sql(
            f"SELECT {', '.join(columns)} FROM dg_event_log WHERE tenant_id = ? ORDER BY log_seq"
        )
        rows = (dict(zip(columns, row, strict=True)) for row in self._stream(sql, (tenant_id,)))
        return verify_rows(tenant_id, rows, head)

    # -- projections -----------------------------------------------------------
    def projection_cursor(self, tenant_id: str) -> int:
        with self._read() as cur:
            return self._cursor_value(cur, tenant_id)

    def _cursor_value(self, cur: Cursor, tenant_id: str) -> int:
        row = self._x(
            cur,
            "SELECT MIN(last_log_seq), COUNT(*) FROM dg_projection_cursor WHERE tenant_id = ?",
            (tenant_id,),
        ).fetchone()
        if row is None or int(row[1]) < len(PROJECTION_NAMES):
            return 0
        return int(row[0])

    def _project_inline(
        self,
        cur: Cursor,
        tenant_id: str,
        head_before: int,
        events: Sequence[StoredEvent],
        trace_heads: Mapping[str, TraceHead],
    ) -> bool:
        """Project just-appended events in the append's transaction.

        Only when projections were current before the append; a failure rolls
        back to a savepoint so the append itself still commits (spec 16.6) and
        the caller's catch-up reports it. Returns whether it projected.
        """
        fresh = [event for event in events if not event.repeated and event.log_seq > head_before]
        self._lock_projections(cur, tenant_id)
        if self._cursor_value(cur, tenant_id) != head_before:
            return False
        try:
            with self._savepoint(cur):
                expected = {trace: head[0] + 1 for trace, head in trace_heads.items()}
                self._apply(cur, tenant_id, fresh, head_before, expected)
        except Exception:  # noqa: BLE001 - reported by the catch-up that follows
            return False
        return True

    def project_pending(
        self, tenant_id: str, *, batch_size: int = 1000, until_log_seq: int | None = None
    ) -> int:
        if batch_size <= 0:
            raise InvalidArgumentError("batch_size must be positive")
        applied = 0
        while True:
            with self._write() as cur:
                self._lock_projections(cur, tenant_id)
                cursor = self._cursor_value(cur, tenant_id)
                if until_log_seq is not None and cursor >= until_log_seq:
                    return applied
                where, params = self._event_filter(tenant_id, cursor, until_log_seq, None, None)
                rows = self._x(
                    cur, _EVENT_SELECT + where + " ORDER BY log_seq LIMIT ?", [*params, batch_size]
                ).fetchall()
                if not rows:
                    return applied
                events = [event_from_row(row) for row in rows]
                self._apply(cur, tenant_id, events, cursor)
                applied += len(events)

    def _apply(
        self,
        cur: Cursor,
        tenant_id: str,
        events: Sequence[StoredEvent],
        cursor: int,
        expected: Mapping[str, int] | None = None,
    ) -> None:
        """Fold ``events`` and write rows and cursors in the caller's transaction.

        ``expected`` (next trace_seq per trace) is given by the inline path,
        which has just checked it under the append lock; events read back from
        the log are looked up and have their payload hashes re-checked.
        """
        from_log = expected is None
        if expected is None:
            expected = self._expected_trace_seqs(cur, tenant_id, events, cursor)
        writes = fold_events(events, expected, check_hashes=from_log)
        self._write_rows(cur, tenant_id, writes)
        self._write_precedents(cur, tenant_id, writes.finished_traces)
        now = self._now()
        updated = self._x(
            cur,
            "UPDATE dg_projection_cursor SET last_log_seq = ?, updated_at = ? WHERE tenant_id = ?",
            (writes.last_log_seq, now, tenant_id),
        ).rowcount
        if updated == len(PROJECTION_NAMES):
            return
        self._many(
            cur,
            "INSERT INTO dg_projection_cursor (tenant_id, projection_name, last_log_seq, updated_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (tenant_id, projection_name) DO UPDATE SET "
            "last_log_seq = excluded.last_log_seq, updated_at = excluded.updated_at",
            [(tenant_id, name, writes.last_log_seq, now) for name in PROJECTION_NAMES],
        )

    def _expected_trace_seqs(
        self, cur: Cursor, tenant_id: str, events: Sequence[StoredEvent], cursor: int
    ) -> dict[str, int]:
        """Next trace_seq of traces continued from before the batch.

        The event just before a trace's first batch event must already be
        projected (log_seq <= cursor); one unique-index probe per trace.
        """
        expected: dict[str, int] = {}
        firsts = {}
        for event in events:
            firsts.setdefault(event.trace_id, event)
        for trace_id in traces_needing_history(events):
            seq = firsts[trace_id].trace_seq
            row = self._x(
                cur,
                "SELECT log_seq FROM dg_event_log WHERE tenant_id = ? AND trace_id = ? "
                "AND trace_seq = ?",
                (tenant_id, trace_id, seq - 1),
            ).fetchone()
            if row is not None and int(row[0]) <= cursor:
                expected[trace_id] = seq
        return expected

    def _write_rows(self, cur: Cursor, tenant_id: str, writes: BatchWrites) -> None:
        self._many(
            cur,
            f"INSERT INTO dg_cg_nodes (tenant_id, {_NODE_COLS}) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (tenant_id, node_id) DO NOTHING",
            [
                (tenant_id, n.node_id, n.node_type, n.trace_id, n.log_seq, n.created_at)
                for n in writes.nodes.values()
            ],
        )
        self._many(
            cur,
            f"INSERT INTO dg_cg_edges (tenant_id, {_EDGE_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (tenant_id, edge_id) DO NOTHING",
            [
                (
                    tenant_id,
                    e.edge_id,
                    e.edge_type,
                    e.from_node_id,
                    e.to_node_id,
                    e.trace_id,
                    e.log_seq,
                    e.created_at,
                )
                for e in writes.edges.values()
            ],
        )
        self._many(
            cur,
            f"INSERT INTO dg_trace_summary (tenant_id, {_SUMMARY_COLS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant_id, trace_id) DO UPDATE "
            "SET event_count = dg_trace_summary.event_count + 1, "
            "last_log_seq = excluded.last_log_seq",
            [
                (
                    tenant_id,
                    s.trace_id,
                    s.workflow,
                    s.title,
                    s.primary_entity_type,
                    s.primary_entity_id,
                    s.outcome,
                    s.started_at,
                    s.finished_at,
                    s.event_count,
                    s.last_log_seq,
                )
                for s in writes.summary_starts
            ],
        )
        self._many(
            cur,
            "UPDATE dg_trace_summary SET outcome = ?, finished_at = ?, "
            "event_count = event_count + 1, last_log_seq = ? WHERE tenant_id = ? AND trace_id = ?",
            [
                (f.outcome, f.finished_at, f.log_seq, tenant_id, f.trace_id)
                for f in writes.summary_finishes
            ],
        )
        self._many(
            cur,
            "INSERT INTO dg_policy_eval_index (tenant_id, index_id, trace_id, policy_id, "
            "policy_version, log_seq, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (tenant_id, index_id) DO NOTHING",
            [
                (
                    tenant_id,
                    p.index_id,
                    p.trace_id,
                    p.policy_id,
                    p.policy_version,
                    p.log_seq,
                    p.created_at,
                )
                for p in writes.policy_rows
            ],
        )

    def _write_precedents(self, cur: Cursor, tenant_id: str, trace_ids: Sequence[str]) -> None:
        """Rebuild the precedent rows of traces that just finished (spec 8.7)."""
        if not trace_ids:
            return
        types = ", ".join("?" for _ in PRECEDENT_SOURCE_TYPES)
        by_trace: dict[str, list[StoredEvent]] = {trace_id: [] for trace_id in trace_ids}
        for chunk in _chunks(list(by_trace)):
            marks = ", ".join("?" for _ in chunk)
            rows = self._x(
                cur,
                _EVENT_SELECT + f" WHERE tenant_id = ? AND trace_id IN ({marks}) "
                f"AND event_type IN ({types}) ORDER BY trace_id, trace_seq",
                [tenant_id, *chunk, *PRECEDENT_SOURCE_TYPES],
            ).fetchall()
            for row in rows:
                event = event_from_row(row)
                by_trace[event.trace_id].append(event)
        self._many(
            cur,
            "DELETE FROM dg_precedent_index WHERE tenant_id = ? AND trace_id = ?",
            [(tenant_id, trace_id) for trace_id in by_trace],
        )
        new_rows: list[PrecedentRow] = []
        for events in by_trace.values():
            new_rows.extend(precedent_rows(events))
        self._many(
            cur,
            f"INSERT INTO dg_precedent_index (tenant_id, {_PRECEDENT_COLS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    tenant_id,
                    r.source_event_id,
                    r.log_seq,
                    r.trace_id,
                    r.policy_id,
                    r.policy_version,
                    r.exception_id,
                    r.primary_entity_type,
                    r.primary_entity_system,
                    r.primary_entity_id,
                )
                for r in new_rows
            ],
        )

    def reset_projections(self, tenant_id: str) -> None:
        with self._write() as cur:
            self._lock_projections(cur, tenant_id)
            for table in (
                "dg_cg_edges",
                "dg_cg_nodes",
                "dg_precedent_index",
                "dg_policy_eval_index",
                "dg_trace_summary",
                "dg_projection_cursor",
            ):
                self._x(cur, f"DELETE FROM {table} WHERE tenant_id = ?", (tenant_id,))

    def digests(self, tenant_id: str) -> Digests:
        graph = context_graph_digest(self.iter_nodes(tenant_id), self.iter_edges(tenant_id))
        return combine(
            graph,
            array_digest(self.iter_summaries(tenant_id)),
            array_digest(self.iter_precedents(tenant_id)),
        )

    # -- projection reads --------------------------------------------------------
    def _iter(
        self, sql: str, tenant_id: str, make: Callable[..., Any]
    ) -> Iterator[Any]:
        for row in self._stream(self._sql(sql), (tenant_id,)):
            yield make(*row)

    def iter_nodes(self, tenant_id: str) -> Iterator[NodeRow]:
        return self._iter(
            f"SELECT {_NODE_COLS} FROM dg_cg_nodes WHERE tenant_id = ? ORDER BY node_id",
            tenant_id,
            NodeRow,
        )

    def iter_edges(self, tenant_id: str) -> Iterator[EdgeRow]:
        return self._iter(
            f"SELECT {_EDGE_COLS} FROM dg_cg_edges WHERE tenant_id = ? ORDER BY edge_id",
            tenant_id,
            EdgeRow,
        )

    def iter_summaries(self, tenant_id: str) -> Iterator[TraceSummaryRow]:
        return self._iter(
            f"SELECT {_SUMMARY_COLS} FROM dg_trace_summary WHERE tenant_id = ? ORDER BY trace_id",
            tenant_id,
            TraceSummaryRow,
        )

    def iter_precedents(self, tenant_id: str) -> Iterator[PrecedentRow]:
        return self._iter(
            f"SELECT {_PRECEDENT_COLS} FROM dg_precedent_index WHERE tenant_id = ? "
            "ORDER BY source_event_id",
            tenant_id,
            PrecedentRow,
        )

    def get_nodes(self, tenant_id: str, node_ids: Sequence[str]) -> list[NodeRow]:
        found: list[NodeRow] = []
        with self._read() as cur:
            for chunk in _chunks(list(node_ids)):
                marks = ", ".join("?" for _ in chunk)
                rows = self._x(
                    cur,
                    f"SELECT {_NODE_COLS} FROM dg_cg_nodes WHERE tenant_id = ? "
                    f"AND node_id IN ({marks})",
                    [tenant_id, *chunk],
                ).fetchall()
                found.extend(NodeRow(*row) for row in rows)
        found.sort(key=lambda node: node.node_id)
        return found

    def get_edge(self, tenant_id: str, edge_id: str) -> EdgeRow | None:
        with self._read() as cur:
            row = self._x(
                cur,
                f"SELECT {_EDGE_COLS} FROM dg_cg_edges WHERE tenant_id = ? AND edge_id = ?",
                (tenant_id, edge_id),
            ).fetchone()
        return None if row is None else EdgeRow(*row)

    def edges_touching(
        self, tenant_id: str, node_ids: Sequence[str], edge_types: Sequence[str] | None
    ) -> list[EdgeRow]:
        found: dict[str, EdgeRow] = {}
        type_clause = ""
        type_params: list[Any] = []
        if edge_types is not None:
            type_clause = " AND edge_type IN (" + ", ".join("?" for _ in edge_types) + ")"
            type_params = list(edge_types)
        with self._read() as cur:
            for chunk in _chunks(list(node_ids), 200):
                marks = ", ".join("?" for _ in chunk)
                for column in ("from_node_id", "to_node_id"):
                    rows = self._x(
                        cur,
                        f"SELECT {_EDGE_COLS} FROM dg_cg_edges WHERE tenant_id = ? "
                        f"AND {column} IN ({marks}){type_clause}",
                        [tenant_id, *chunk, *type_params],
                    ).fetchall()
                    for row in rows:
                        found.setdefault(row[0], EdgeRow(*row))
        return [found[key] for key in sorted(found)]

    def edge_page(
        self,
        tenant_id: str,
        node_id: str,
        direction: str,
        after: tuple[int, str] | None,
        limit: int,
    ) -> list[EdgeRow]:
        columns = {
            "outgoing": ("from_node_id",),
            "incoming": ("to_node_id",),
            "both": ("from_node_id", "to_node_id"),
        }[direction]
        pages: list[EdgeRow] = []
        with self._read() as cur:
            for column in columns:
                sql = f"SELECT {_EDGE_COLS} FROM dg_cg_edges WHERE tenant_id = ? AND {column} = ?"
                params: list[Any] = [tenant_id, node_id]
                if after is not None:
                    sql += " AND (log_seq > ? OR (log_seq = ? AND edge_id > ?))"
                    params.extend((after[0], after[0], after[1]))
                sql += " ORDER BY log_seq, edge_id LIMIT ?"
                params.append(limit)
                pages.extend(EdgeRow(*row) for row in self._x(cur, sql, params).fetchall())
        unique = {edge.edge_id: edge for edge in pages}
        return sorted(unique.values(), key=lambda edge: (edge.log_seq, edge.edge_id))[:limit]

    def get_summary(self, tenant_id: str, trace_id: str) -> TraceSummaryRow | None:
        with self._read() as cur:
            row = self._x(
                cur,
                f"SELECT {_SUMMARY_COLS} FROM dg_trace_summary WHERE tenant_id = ? AND trace_id = ?",
                (tenant_id, trace_id),
            ).fetchone()
        return None if row is None else TraceSummaryRow(*row)

    def search_precedents(
        self,
        tenant_id: str,
        *,
        policy_id: str | None,
        policy_version: str | None,
        entity_type: str | None,
        entity_id: str | None,
        outcome: str | None,
        limit: int,
    ) -> list[PrecedentHitRow]:
        where = ["s.tenant_id = ?", "s.outcome IS NOT NULL"]
        params: list[Any] = [tenant_id]
        for column, value in (
            ("s.outcome", outcome),
            ("s.primary_entity_type", entity_type),
            ("s.primary_entity_id", entity_id),
        ):
            if value:
                where.append(f"{column} = ?")
                params.append(value)
        if policy_id:
            inner = ["p.tenant_id = ?", "p.policy_id = ?"]
            inner_params: list[Any] = [tenant_id, policy_id]
            if policy_version:
                inner.append("p.policy_version = ?")
                inner_params.append(policy_version)
            sql = (
                "SELECT s.trace_id, s.workflow, s.title, s.outcome, b.policy_id, "
                "b.policy_version, s.finished_at FROM dg_trace_summary s JOIN ("
                "SELECT p.trace_id, p.policy_id, p.policy_version, ROW_NUMBER() OVER ("
                "PARTITION BY p.trace_id ORDER BY (p.exception_id IS NULL), p.log_seq DESC, "
                "p.source_event_id) AS pick FROM dg_precedent_index p WHERE "
                + " AND ".join(inner)
                + ") b ON b.trace_id = s.trace_id AND b.pick = 1 WHERE "
                + " AND ".join(where)
            )
            params = inner_params + params
        else:
            sql = (
                "SELECT s.trace_id, s.workflow, s.title, s.outcome, NULL, NULL, s.finished_at "
                "FROM dg_trace_summary s WHERE " + " AND ".join(where)
            )
        sql += " ORDER BY s.last_log_seq DESC, s.trace_id ASC LIMIT ?"
        params.append(limit)
        with self._read() as cur:
            rows = self._x(cur, sql, params).fetchall()
        return [PrecedentHitRow(*row) for row in rows]


def genesis_head() -> tuple[int, str]:
    return (0, GENESIS_CHAIN_HASH)
