"""Projection maintenance over SQL: fold batches of the log into rows and
advance the cursors in the same transaction."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

from decisiongraph.core.envelope import StoredEvent
from decisiongraph.core.errors import DecisionGraphError, InvalidArgumentError
from decisiongraph.core.hashing import sha256_text
from decisiongraph.projections.batch import BatchWrites, fold_events, traces_needing_history
from decisiongraph.projections.digests import (
    Digests,
    array_digest,
    combine,
    context_graph_digest,
)
from decisiongraph.projections.policy_index import PRECEDENT_SOURCE_TYPES, precedent_rows
from decisiongraph.projections.projected_event import ProjectedEvent, ReplayedEvent
from decisiongraph.projections.rows import (
    CONTEXT_GRAPH,
    POLICY_EVAL_INDEX,
    PRECEDENT_INDEX,
    PROJECTION_NAMES,
    TRACE_SUMMARY,
    PrecedentRow,
    check_projection_names,
)
from decisiongraph.store.append_plan import (
    TraceHead,
)
from decisiongraph.store.gc_pause import gc_paused
from decisiongraph.store.read_ahead import ReadAhead
from decisiongraph.store.sql_backend import (
    EDGE_COLS,
    NODE_COLS,
    PRECEDENT_COLS,
    REPLAY_SELECT,
    SUMMARY_COLS,
    Cursor,
    ProjectionDeferred,
    Streamer,
    chunks,
    next_window,
    replayed_from_row,
)
from decisiongraph.store.sql_projection_reads import SqlProjectionReads
from decisiongraph.store.tables import LIVE, TableSet


@dataclass(slots=True)
class PreparedBatch:
    """A batch folded into rows, ready for the transaction that writes it."""

    start: int  # the cursor it continues from
    event_count: int
    writes: BatchWrites
    sources: dict[str, list[ProjectedEvent]]  # precedent sources of finished traces


# Column lists of the projection tables, tenant first (as the rows are built).
_NODE_COLUMNS = ("tenant_id", *NODE_COLS.split(", "))
_EDGE_COLUMNS = ("tenant_id", *EDGE_COLS.split(", "))
_SUMMARY_COLUMNS = ("tenant_id", *SUMMARY_COLS.split(", "))
_PRECEDENT_COLUMNS = ("tenant_id", *PRECEDENT_COLS.split(", "))
_POLICY_COLUMNS = (
    "tenant_id",
    "index_id",
    "trace_id",
    "policy_id",
    "policy_version",
    "log_seq",
    "created_at",
)


class SqlProjector(SqlProjectionReads):
    """Catch-up, inline projection, rebuild and digests."""

    # -- cursors -------------------------------------------------------------
    def projection_cursors(self, tenant_id: str) -> dict[str, int]:
        """Each projection's last applied log_seq (0 before the first)."""
        with self._read() as cur:
            return self._cursors(cur, tenant_id)

    def projection_cursor(self, tenant_id: str, projection: str | None = None) -> int:
        """One projection's cursor, or the lowest of all when none is named."""
        cursors = self.projection_cursors(tenant_id)
        return cursors[projection] if projection is not None else min(cursors.values())

    def _cursors(self, cur: Cursor, tenant_id: str, t: TableSet = LIVE) -> dict[str, int]:
        cursors = dict.fromkeys(PROJECTION_NAMES, 0)
        rows = self._x(
            cur,
            f"SELECT projection_name, last_log_seq FROM {t.cursor} WHERE tenant_id = ?",
            (tenant_id,),
        ).fetchall()
        cursors.update({str(name): int(seq) for name, seq in rows if name in cursors})
        return cursors

    # -- applying events -------------------------------------------------------
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
        """Project just-appended events in the append's transaction.

        Only when every projection was current before the append. A
        ``guarded`` projection runs under a savepoint, so that its failure
        undoes only its own writes and the append itself still commits
        (spec 16.6); an unguarded one leaves the transaction as the failure
        left it and raises :class:`ProjectionDeferred`, for the caller to
        undo and redo without projecting. Either way the caller's catch-up
        reports the failure. Returns whether it projected.
        """
        fresh = [event for event in events if not event.repeated and event.log_seq > head_before]
        self._lock_projections(cur, tenant_id, PROJECTION_NAMES)
        if not self._projections_current(tenant_id, head_before) and any(
            seq != head_before for seq in self._cursors(cur, tenant_id).values()
        ):
            return False
        expected = {trace: head[0] + 1 for trace, head in trace_heads.items()}
        if not guarded:
            try:
                self._apply(cur, tenant_id, fresh, head_before, PROJECTION_NAMES, expected)
            except Exception as exc:
                raise ProjectionDeferred from exc
            return True
        try:
            with self._savepoint(cur):
                self._apply(cur, tenant_id, fresh, head_before, PROJECTION_NAMES, expected)
        except Exception:  # reported by the catch-up that follows
            return False
        return True

    def project_pending(
        self,
        tenant_id: str,
        *,
        batch_size: int = 1000,
        until_log_seq: int | None = None,
        projections: Sequence[str] | None = None,
        max_batches: int | None = None,
    ) -> int:
        """Catch projections up from their own cursors, one batch per transaction.

        Projections whose cursors agree share one pass over the log. With
        ``max_batches`` it stops after that many transactions (a worker's unit
        of work, so a stop request waits for one batch at most). Returns the
        number of log events read.
        """
        if batch_size <= 0:
            raise InvalidArgumentError("batch_size must be positive")
        names = self._projection_names(projections)
        try:
            return self._catch_up(tenant_id, names, batch_size, until_log_seq, LIVE, max_batches)
        except DecisionGraphError:
            raise
        except Exception as exc:
            translated = self._translate_error(exc)
            if translated is None:
                raise
            raise translated from exc

    def _catch_up(
        self,
        tenant_id: str,
        names: Sequence[str],
        batch_size: int,
        until_log_seq: int | None,
        t: TableSet,
        max_batches: int | None = None,
    ) -> int:
        if self._caught_up(tenant_id, names, until_log_seq, t):
            return 0
        applied = 0
        if max_batches is None:
            applied = self._catch_up_ahead(tenant_id, names, batch_size, until_log_seq, t)
        batches = 0
        while max_batches is None or batches < max_batches:
            batches += 1
            with gc_paused(), self._write() as cur:
                self._lock_projections(cur, tenant_id, names)
                cursors = {
                    name: seq
                    for name, seq in self._cursors(cur, tenant_id, t).items()
                    if name in names
                }
                low = min(cursors.values())
                if until_log_seq is not None and low >= until_log_seq:
                    return applied
                # Sharing helps only when other projections will read the same.
                consumers = frozenset(
                    f"{t.cursor}:{name}" for name in names if len(names) < len(PROJECTION_NAMES)
                )
                events, bad = self._fetch_after(
                    cur, tenant_id, low, batch_size, until_log_seq, consumers
                )
                if not events:
                    return applied
                skipped = self._skipped(cur, tenant_id, low, events[-1].log_seq)
                for start in sorted(set(cursors.values())):
                    group = tuple(name for name in names if cursors[name] == start)
                    subset = [event for event in events if event.log_seq > start]
                    if not subset:
                        continue
                    if any(skipped.get(name) for name in group):
                        for name in group:  # skips differ per projection
                            skip = skipped.get(name, frozenset())
                            self._apply(
                                cur, tenant_id, subset, start, (name,), t=t, skip=skip, bad=bad
                            )
                    else:
                        self._apply(cur, tenant_id, subset, start, group, t=t, bad=bad)
                applied += len(events)
        return applied

    def _caught_up(
        self, tenant_id: str, names: Sequence[str], until_log_seq: int | None, t: TableSet
    ) -> bool:
        """Whether the named projections already stand at the head (or ``until``).

        A plain read, so that the common wake-up with nothing to do (every
        worker is woken by every append, and on SQLite the append usually
        projected itself) takes no write lock from the appenders. Cursors are
        read before the head: both only grow, so a race can only report work
        that is not there, which the locked pass then finds out.
        """
        with self._read() as cur:
            cursors = self._cursors(cur, tenant_id, t)
            head = self._log_head_seq(cur, tenant_id)
        target = head if until_log_seq is None else min(head, until_log_seq)
        return all(cursors[name] >= target for name in names)

    def _catch_up_ahead(
        self,
        tenant_id: str,
        names: Sequence[str],
        batch_size: int,
        until_log_seq: int | None,
        t: TableSet,
    ) -> int:
        """A long catch-up whose next batch is folded while the current one commits.

        Only where the backend offers a second connection for reading
        (:meth:`_reader`), only when every named projection stands at one
        cursor, and only for backlogs of several batches. Each transaction
        still checks that the cursors stand where its batch begins; if not,
        or at a range with operator skips, it stops and leaves the rest to
        the ordinary loop. Batches share a transaction until it holds
        ``catch_up_commit_events`` events, so a failure undoes all of them.
        Returns the events applied.
        """
        with self._reader() as reader:
            if reader is None:
                return 0
            with self._read() as cur:
                cursors = self._cursors(cur, tenant_id, t)
                head = self._log_head_seq(cur, tenant_id)
            starts = {cursors[name] for name in names}
            if until_log_seq is not None:
                head = min(head, until_log_seq)
            if len(starts) != 1 or batch_size < 50 or head - min(starts) < 2 * batch_size:
                return 0

            def prepare(after: int) -> PreparedBatch | None:
                with gc_paused(), reader() as rcur:
                    events, bad = self._fetch_after(
                        rcur, tenant_id, after, batch_size, until_log_seq
                    )
                    if not events or self._skipped(rcur, tenant_id, after, events[-1].log_seq):
                        return None
                    return self._prepare(rcur, tenant_id, events, after, names, bad=bad)

            helper = ReadAhead(prepare)
            try:
                with self._bulk_writes():
                    return self._write_ahead(helper, starts.pop(), tenant_id, names, t)
            finally:
                helper.close()

    def _write_ahead(
        self,
        helper: ReadAhead[PreparedBatch | None],
        start: int,
        tenant_id: str,
        names: Sequence[str],
        t: TableSet,
    ) -> int:
        """Write the batches ``helper`` prepares from ``start`` on, several to a
        transaction, until it has none or someone else has moved a cursor."""
        applied = 0
        helper.request(start)
        batch = helper.take()
        while batch is not None:
            with gc_paused(), self._write() as cur:
                self._lock_projections(cur, tenant_id, names)
                cursors = self._cursors(cur, tenant_id, t)
                if any(cursors[name] != batch.start for name in names):
                    return applied  # someone else moved them: the ordinary loop
                in_transaction = 0
                while batch is not None:
                    in_transaction += batch.event_count
                    last = in_transaction >= self.catch_up_commit_events
                    # The helper starts once the writer stops needing the GIL:
                    # at the commit, or once the rows are sent where the server
                    # writes them or where the writer has nothing to do but
                    # wait for the next batch.
                    start_next = partial(helper.request, batch.writes.last_log_seq)
                    at_commit = last and not self.server_side_writes
                    early = None if at_commit else start_next
                    self._write_prepared(cur, tenant_id, batch, names, t, early)
                    applied += batch.event_count
                    if at_commit:
                        start_next()
                    batch = None if last else helper.take()
            if last:
                batch = helper.take()
        return applied

    def _fetch_after(
        self,
        cur: Cursor,
        tenant_id: str,
        after: int,
        limit: int,
        until_log_seq: int | None = None,
        consumers: frozenset[str] = frozenset(),
    ) -> tuple[list[ReplayedEvent], frozenset[int]]:
        """The next events after ``after``, and the log_seqs whose payload no
        longer matches its hash.

        Stored payloads are canonical JSON-P, so hashing the stored text is
        the spec's re-hash of the re-parsed payload without re-encoding it.
        ``consumers`` (the projections about to apply the batch) may share a
        batch another projection just read; a projection reading the same
        position again (a retry) always reads afresh.
        """

        def read() -> tuple[list[ReplayedEvent], frozenset[int]]:
            bound = next_window(after, limit, until_log_seq)
            where, params = self._event_filter(tenant_id, after, bound, None, None)
            rows = self._x(
                cur, REPLAY_SELECT + where + " ORDER BY log_seq LIMIT ?", [*params, limit]
            ).fetchall()
            bad = frozenset(int(row[0]) for row in rows if sha256_text(row[8]) != row[9])
            # A payload that fails its hash is never folded (the fold refuses
            # it, or passes over an operator's skip), so it is not decoded:
            # it may not even be JSON, and must still be skippable.
            return [
                replayed_from_row(row, decode_payload=int(row[0]) not in bad) for row in rows
            ], bad

        if not consumers:
            return read()
        return self._recent_batches.fetch(tenant_id, after, limit, until_log_seq, consumers, read)

    def _skipped(
        self, cur: Cursor, tenant_id: str, low: int, high: int
    ) -> dict[str, frozenset[int]]:
        """Events an operator chose to skip, per projection, in (low, high]."""
        rows = self._x(
            cur,
            "SELECT projection_name, log_seq FROM dg_dead_letter WHERE tenant_id = ? "
            "AND status = 'skipped' AND log_seq > ? AND log_seq <= ?",
            (tenant_id, low, high),
        ).fetchall()
        found: dict[str, set[int]] = {}
        for name, seq in rows:
            found.setdefault(str(name), set()).add(int(seq))
        return {name: frozenset(seqs) for name, seqs in found.items()}

    @staticmethod
    def _projection_names(projections: Sequence[str] | None) -> tuple[str, ...]:
        if projections is None:
            return PROJECTION_NAMES
        return check_projection_names(projections)

    def _apply(
        self,
        cur: Cursor,
        tenant_id: str,
        events: Sequence[ProjectedEvent],
        cursor: int,
        names: Sequence[str],
        expected: Mapping[str, int] | None = None,
        t: TableSet = LIVE,
        skip: frozenset[int] = frozenset(),
        bad: frozenset[int] = frozenset(),
    ) -> None:
        """Fold ``events`` and write the named projections' rows and cursors.

        ``expected`` (next trace_seq per trace) is given by the inline path,
        which has just checked it under the append lock; for events read back
        from the log it is looked up. ``bad`` are log_seqs whose stored payload
        failed its hash check (see :meth:`_fetch_after`).
        """
        prepared = self._prepare(cur, tenant_id, events, cursor, names, expected, skip, bad)
        self._write_prepared(cur, tenant_id, prepared, names, t)

    def _prepare(
        self,
        cur: Cursor,
        tenant_id: str,
        events: Sequence[ProjectedEvent],
        cursor: int,
        names: Sequence[str],
        expected: Mapping[str, int] | None = None,
        skip: frozenset[int] = frozenset(),
        bad: frozenset[int] = frozenset(),
    ) -> PreparedBatch:
        """Everything a batch writes, from reads of the (immutable) log alone."""
        if expected is None:
            expected = self._expected_trace_seqs(cur, tenant_id, events, cursor)
        writes = fold_events(events, expected, bad_hashes=bad, skip=skip, projections=names)
        sources = (
            self._precedent_sources(cur, tenant_id, writes.finished_traces, events)
            if PRECEDENT_INDEX in names
            else {}
        )
        return PreparedBatch(cursor, len(events), writes, sources)

    def _write_prepared(
        self,
        cur: Cursor,
        tenant_id: str,
        prepared: PreparedBatch,
        names: Sequence[str],
        t: TableSet,
        sent: Callable[[], None] | None = None,
    ) -> None:
        """Write a prepared batch and advance the cursors; ``sent`` is called
        once every row is on its way (before the first answer is awaited)."""
        writes = prepared.writes
        # Reads are done; the writes need no answers until the cursor's.
        with self._pipelined():
            if CONTEXT_GRAPH in names:
                self._write_graph(cur, tenant_id, writes, t)
            if TRACE_SUMMARY in names:
                self._write_summaries(cur, tenant_id, writes, t)
            if POLICY_EVAL_INDEX in names:
                self._write_policy_index(cur, tenant_id, writes, t)
            if PRECEDENT_INDEX in names:
                self._write_precedents(cur, tenant_id, prepared.sources, t)
            if sent is not None:
                sent()
            self._advance(cur, tenant_id, names, writes.last_log_seq, t)

    def _advance(
        self, cur: Cursor, tenant_id: str, names: Sequence[str], log_seq: int, t: TableSet
    ) -> None:
        now = self._now()
        if len(names) == len(PROJECTION_NAMES):
            # A tenant's cursor rows are exactly its projections' (half the cost
            # of the IN list, and this runs with every inline-projected append).
            updated = self._x(
                cur,
                f"UPDATE {t.cursor} SET last_log_seq = ?, updated_at = ? WHERE tenant_id = ?",
                (log_seq, now, tenant_id),
            ).rowcount
        else:
            marks = ", ".join("?" for _ in names)
            updated = self._x(
                cur,
                f"UPDATE {t.cursor} SET last_log_seq = ?, updated_at = ? "
                f"WHERE tenant_id = ? AND projection_name IN ({marks})",
                (log_seq, now, tenant_id, *names),
            ).rowcount
        if updated == len(names):
            return
        self._many(
            cur,
            f"INSERT INTO {t.cursor} "
            "(tenant_id, projection_name, last_log_seq, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (tenant_id, projection_name) DO UPDATE SET "
            "last_log_seq = excluded.last_log_seq, updated_at = excluded.updated_at",
            [(tenant_id, name, log_seq, now) for name in names],
        )

    def _expected_trace_seqs(
        self, cur: Cursor, tenant_id: str, events: Sequence[ProjectedEvent], cursor: int
    ) -> dict[str, int]:
        """Next trace_seq of traces continued from before the batch.

        The event just before a trace's first batch event must already be
        projected (log_seq <= cursor); one unique-index probe per trace.
        """
        expected: dict[str, int] = {}
        firsts: dict[str, ProjectedEvent] = {}
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

    def _write_graph(self, cur: Cursor, tenant_id: str, writes: BatchWrites, t: TableSet) -> None:
        self._insert_rows(
            cur,
            t.nodes,
            _NODE_COLUMNS,
            [
                (tenant_id, n.node_id, n.node_type, n.trace_id, n.log_seq, n.created_at)
                for n in writes.nodes.values()
            ],
            "ON CONFLICT (tenant_id, node_id) DO NOTHING",
        )
        self._insert_rows(
            cur,
            t.edges,
            _EDGE_COLUMNS,
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
            "ON CONFLICT (tenant_id, edge_id) DO NOTHING",
        )

    def _write_summaries(
        self, cur: Cursor, tenant_id: str, writes: BatchWrites, t: TableSet
    ) -> None:
        # A batch holds at most one start and one finish per trace (trace_seq
        # 0 and the finish are unique), so set-based writes are safe.
        self._insert_rows(
            cur,
            t.summary,
            _SUMMARY_COLUMNS,
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
            "ON CONFLICT (tenant_id, trace_id) DO UPDATE "
            f"SET event_count = {t.summary}.event_count + 1, "
            "last_log_seq = excluded.last_log_seq",
        )
        self._finish_summaries(
            cur,
            t.summary,
            [
                (f.outcome, f.finished_at, f.log_seq, tenant_id, f.trace_id)
                for f in writes.summary_finishes
            ],
        )

    def _write_policy_index(
        self, cur: Cursor, tenant_id: str, writes: BatchWrites, t: TableSet
    ) -> None:
        self._insert_rows(
            cur,
            t.policy,
            _POLICY_COLUMNS,
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
            "ON CONFLICT (tenant_id, index_id) DO NOTHING",
        )

    def _precedent_sources(
        self,
        cur: Cursor,
        tenant_id: str,
        trace_ids: Sequence[str],
        batch: Sequence[ProjectedEvent],
    ) -> dict[str, list[ProjectedEvent]]:
        """The precedent-source events of traces that just finished (spec 8.7).

        A trace that lies wholly in ``batch`` (its TraceStarted is there) is
        taken from the batch; only traces begun earlier are read back.
        """
        if not trace_ids:
            return {}
        by_trace: dict[str, list[ProjectedEvent]] = {trace_id: [] for trace_id in trace_ids}
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
                REPLAY_SELECT + f" WHERE tenant_id = ? AND trace_id IN ({marks}) "
                f"AND event_type IN ({types}) ORDER BY trace_id, trace_seq",
                [tenant_id, *chunk, *PRECEDENT_SOURCE_TYPES],
            ).fetchall()
            for row in rows:
                event = replayed_from_row(row)
                by_trace[event.trace_id].append(event)
        return by_trace

    def _write_precedents(
        self, cur: Cursor, tenant_id: str, by_trace: Mapping[str, list[ProjectedEvent]], t: TableSet
    ) -> None:
        """Replace the precedent rows of the finished traces in ``by_trace``."""
        if not by_trace:
            return
        self._delete_traces(cur, t.precedent, tenant_id, list(by_trace))
        new_rows: list[PrecedentRow] = []
        for events in by_trace.values():
            new_rows.extend(precedent_rows(events))
        self._insert_rows(
            cur,
            t.precedent,
            _PRECEDENT_COLUMNS,
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

    def reset_projections(self, tenant_id: str, projections: Sequence[str] | None = None) -> None:
        """Delete the rows and cursors of the named (default: all) projections."""
        self._reset(tenant_id, self._projection_names(projections), LIVE)

    def _reset(self, tenant_id: str, names: Sequence[str], t: TableSet) -> None:
        self._recent_batches.clear()
        with self._write() as cur:
            self._lock_projections(cur, tenant_id, names)
            for name in names:
                for table in t.of(name):
                    self._x(cur, f"DELETE FROM {table} WHERE tenant_id = ?", (tenant_id,))
            marks = ", ".join("?" for _ in names)
            self._x(
                cur,
                f"DELETE FROM {t.cursor} WHERE tenant_id = ? AND projection_name IN ({marks})",
                (tenant_id, *names),
            )

    def digests(
        self, tenant_id: str, t: TableSet = LIVE, stream: Streamer | None = None
    ) -> Digests:
        """The tenant's digests; with ``stream`` (a snapshot's, see
        ``_snapshot``) all four read one state, else each reads afresh."""
        graph = context_graph_digest(
            self.iter_nodes(tenant_id, t, stream), self.iter_edges(tenant_id, t, stream)
        )
        return combine(
            graph,
            array_digest(self.iter_summaries(tenant_id, t, stream)),
            array_digest(self.iter_precedents(tenant_id, t, stream)),
        )
