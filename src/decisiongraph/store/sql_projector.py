"""Projection maintenance over SQL: fold batches of the log into rows and
advance the cursors in the same transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from decisiongraph.core.envelope import StoredEvent
from decisiongraph.core.errors import (
    InvalidArgumentError,
)
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
    PrecedentRow,
)
from decisiongraph.store.append_plan import (
    TraceHead,
)
from decisiongraph.store.sql_backend import (
    EDGE_COLS,
    EVENT_SELECT,
    NODE_COLS,
    PRECEDENT_COLS,
    SUMMARY_COLS,
    Cursor,
    chunks,
    event_from_row,
)
from decisiongraph.store.sql_projection_reads import SqlProjectionReads


class SqlProjector(SqlProjectionReads):
    """Catch-up, inline projection, rebuild and digests."""

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
        except Exception:  # reported by the catch-up that follows
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
                    cur, EVENT_SELECT + where + " ORDER BY log_seq LIMIT ?", [*params, batch_size]
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
        self._write_precedents(cur, tenant_id, writes.finished_traces, events)
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
            "INSERT INTO dg_projection_cursor "
            "(tenant_id, projection_name, last_log_seq, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (tenant_id, projection_name) DO UPDATE SET "
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
        firsts: dict[str, StoredEvent] = {}
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
            f"INSERT INTO dg_cg_nodes (tenant_id, {NODE_COLS}) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (tenant_id, node_id) DO NOTHING",
            [
                (tenant_id, n.node_id, n.node_type, n.trace_id, n.log_seq, n.created_at)
                for n in writes.nodes.values()
            ],
        )
        self._many(
            cur,
            f"INSERT INTO dg_cg_edges (tenant_id, {EDGE_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
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
            f"INSERT INTO dg_trace_summary (tenant_id, {SUMMARY_COLS}) "
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

    def _write_precedents(
        self,
        cur: Cursor,
        tenant_id: str,
        trace_ids: Sequence[str],
        batch: Sequence[StoredEvent],
    ) -> None:
        """Rebuild the precedent rows of traces that just finished (spec 8.7).

        The rows come from the trace's events in the log. A trace that lies
        wholly in ``batch`` (its TraceStarted is there) is taken from the
        batch; only traces begun earlier are read back.
        """
        if not trace_ids:
            return
        by_trace: dict[str, list[StoredEvent]] = {trace_id: [] for trace_id in trace_ids}
        whole = {e.trace_id for e in batch if e.trace_seq == 0 and e.trace_id in by_trace}
        for event in batch:
            if event.trace_id in whole and event.event_type in PRECEDENT_SOURCE_TYPES:
                by_trace[event.trace_id].append(event)
        earlier = [trace_id for trace_id in by_trace if trace_id not in whole]
        types = ", ".join("?" for _ in PRECEDENT_SOURCE_TYPES)
        for chunk in chunks(earlier):
            marks = ", ".join("?" for _ in chunk)
            rows = self._x(
                cur,
                EVENT_SELECT + f" WHERE tenant_id = ? AND trace_id IN ({marks}) "
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
            f"INSERT INTO dg_precedent_index (tenant_id, {PRECEDENT_COLS}) "
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
