"""The event log over SQL: validated appends under the tenant lock, log reads,
and verification of the hash chain."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from decisiongraph.core.envelope import EventEnvelope, StoredEvent
from decisiongraph.core.errors import (
    DUPLICATE_EVENT_ID,
    DecisionGraphError,
    InvalidArgumentError,
    StorageError,
)
from decisiongraph.core.event_types import TRACE_FINISHED
from decisiongraph.core.validation import ValidatedEvent, check_tenant_id, validate_envelope
from decisiongraph.store.append_plan import (
    AppendPlan,
    IdemKey,
    idem_key,
    plan_append,
)
from decisiongraph.store.chain import ChainProblem, verify_rows
from decisiongraph.store.columns import CHAIN_FIELDS
from decisiongraph.store.group_commit import NO_ARRIVAL, Arrival
from decisiongraph.store.protocol import LogStats
from decisiongraph.store.sql_backend import (
    EVENT_SELECT,
    Cursor,
    ProjectionDeferred,
    SqlBackend,
    chunks,
    event_from_row,
    next_window,
)

log = logging.getLogger(__name__)


class KeyTaken(Exception):
    """An optimistic append hit a stored idempotency key: redo it exactly."""


def _validated(envelopes: Sequence[EventEnvelope]) -> list[ValidatedEvent]:
    """Each envelope validated, in order; an error names the event's position."""
    items: list[ValidatedEvent] = []
    for index, envelope in enumerate(envelopes):
        try:
            items.append(validate_envelope(envelope))
        except DecisionGraphError as exc:
            if len(envelopes) > 1:
                exc.message = f"event {index}: {exc.message}"
            raise exc.with_details(index=index) from None
    return items


def duplicate_event_id(index: int, event_id: str) -> StorageError:
    """The error for an event whose id the tenant's log already holds (or an
    earlier event of the same batch takes)."""
    return StorageError(
        f"event {index}: event_id '{event_id}' already exists",
        details={"index": index, "event_id": event_id, "reason": DUPLICATE_EVENT_ID},
    )


class SqlLog(SqlBackend):
    """Appends and reads of the append-only log."""

    # -- append ------------------------------------------------------------
    def expect_append(self) -> Arrival:
        """Announce an append this caller is about to make (see :meth:`arriving`)."""
        return NO_ARRIVAL

    @contextmanager
    def arriving(self, arrival: Arrival | None = None) -> Iterator[None]:
        """This thread's coming append (parsing, validating) is on its way,
        as announced by ``arrival`` or from now on.

        A backend that groups concurrent appends into one commit (SQLite)
        may wait briefly for appends on their way; elsewhere this does
        nothing.
        """
        yield

    def append(
        self,
        tenant_id: str,
        envelopes: Sequence[EventEnvelope],
        *,
        project: bool = False,
        catch_up: bool = True,
    ) -> list[StoredEvent]:
        check_tenant_id(tenant_id)
        with self.arriving():  # until queued (SQLite) or done
            items = _validated(envelopes)
            if not items:
                return []
            recorded_at = self._now()
            try:
                plan, projected = self._commit_append(tenant_id, items, recorded_at, project)
            except DecisionGraphError:
                raise
            except Exception as exc:
                translated = self._append_error(tenant_id, items, exc)
                if translated is None:
                    raise
                raise translated from exc
        if plan.rows:
            for listener in list(self._append_listeners):
                listener(tenant_id, plan.last_log_seq)
            if not projected:
                for listener in list(self._backlog_listeners):
                    listener(tenant_id, plan.last_log_seq)
        if project and catch_up and not projected:
            target = max(event.log_seq for event in plan.results)
            try:
                self.project_pending(tenant_id, until_log_seq=target)
            except Exception as exc:
                # The append is committed: its caller must hear that it was
                # stored. The projection stays behind (reads say so with
                # DG_ERR_PROJECTION_OUT_OF_DATE) for a worker to retry or
                # dead-letter; a projection failure never fails an append.
                log.warning(
                    "tenant %s: events up to log_seq %d were stored but not projected: %s",
                    tenant_id,
                    target,
                    exc,
                )
        return plan.results

    def _commit_append(
        self, tenant_id: str, items: Sequence[ValidatedEvent], recorded_at: str, project: bool
    ) -> tuple[AppendPlan, bool]:
        """Append in a transaction of its own, optimistically first.

        Optimistic twice: idempotency keys are assumed new (see
        :meth:`_append_in`), and the inline projection runs without a
        savepoint, since the transaction is the append's alone: should the
        projection fail, the append is redone without it. A backend may
        instead share one transaction among concurrent appends (SQLite's
        group commit), each under a savepoint.
        """
        probe = False
        while True:
            try:
                with self._append_txn() as cur:
                    return self._append_in(
                        cur, tenant_id, items, recorded_at, project, probe=probe, guarded=False
                    )
            except KeyTaken:
                probe = True
            except ProjectionDeferred:
                project = False

    def _append_in(
        self,
        cur: Cursor,
        tenant_id: str,
        items: Sequence[ValidatedEvent],
        recorded_at: str,
        project: bool,
        *,
        probe: bool,
        guarded: bool = True,
    ) -> tuple[AppendPlan, bool]:
        """One append inside an open transaction; ``probe`` looks up the
        idempotency keys first; an inline projection that is not
        ``guarded`` by a savepoint raises :class:`ProjectionDeferred` when
        it fails, for the caller to undo the transaction.

        Without ``probe`` the batch is planned as if none of its keys were
        stored, the usual case, and the unique index has the last word: a
        plan error or a taken key sends the caller back (via
        :class:`KeyTaken`) to the exact path, so outcomes never differ.
        Rows go to the backend's sink as they are planned (PostgreSQL copies
        them while the rest of the batch is still being hashed).
        """
        projected = False
        head = self._lock_log_head(cur, tenant_id)
        trace_ids = list(dict.fromkeys(item.envelope.trace_id for item in items))
        heads = self._trace_heads(cur, tenant_id, trace_ids)
        existing = {}
        if probe:
            keys = [idem_key(item) for item in items]
            existing = self._find_existing(cur, tenant_id, keys)
        try:
            with self._event_sink(cur, len(items)) as sink:
                plan = plan_append(tenant_id, items, existing, heads, head, recorded_at, emit=sink)
                if probe:
                    self._check_new_ids(cur, tenant_id, items, plan)
        except DecisionGraphError:
            if probe:
                raise
            raise KeyTaken from None  # perhaps a retry of stored events
        except Exception as exc:
            if not probe and self._key_taken(exc):
                raise KeyTaken from exc
            raise
        if plan.rows:
            self._x(
                cur,
                "UPDATE dg_log_head SET last_log_seq = ?, chain_hash = ? WHERE tenant_id = ?",
                (plan.last_log_seq, plan.last_chain_hash, tenant_id),
            )
            self._announce(cur, tenant_id, plan.last_log_seq)
            if project:
                projected = self._project_inline(
                    cur, tenant_id, head[0], plan.results, heads, guarded=guarded
                )
            after = {
                event.trace_id: (event.trace_seq, event.event_type)
                for event in plan.results
                if not event.repeated
            }
            self._stage_append(tenant_id, plan, after, projected)
        return plan, projected

    def _append_error(
        self, tenant_id: str, items: Sequence[ValidatedEvent], exc: Exception
    ) -> DecisionGraphError | None:
        """The domain error for a failed append (None: not a database error).

        Ask while the database still looks as the failed append left it: a
        storage failure is explained by what is stored.
        """
        translated = self._translate_error(exc)
        if translated is not None and translated.code == "DG_ERR_STORAGE":
            translated = self._explain_storage_failure(tenant_id, items, translated)
        return translated

    def _key_taken(self, exc: Exception) -> bool:
        """Whether a failed optimistic insert hit a stored key, which sends
        the append down the exact path (see :meth:`_append_in`)."""
        error = self._translate_error(exc)
        return error is not None and error.code == "DG_ERR_IDEMPOTENCY_CONFLICT"

    def _check_new_ids(
        self, cur: Cursor, tenant_id: str, items: Sequence[ValidatedEvent], plan: AppendPlan
    ) -> None:
        """On the exact path, before the rows are written: refuse a planned
        event whose id is taken. Nothing to do where a unique index on the
        ids refuses the insert (the failure is then explained by
        :meth:`_explain_storage_failure`)."""

    def _event_id_stored(self, cur: Cursor, tenant_id: str, event_id: str) -> bool:
        row = self._x(
            cur,
            "SELECT 1 FROM dg_event_log WHERE tenant_id = ? AND event_id = ?",
            (tenant_id, event_id),
        ).fetchone()
        return row is not None

    def _explain_storage_failure(
        self, tenant_id: str, items: Sequence[ValidatedEvent], error: DecisionGraphError
    ) -> DecisionGraphError:
        """Name the event whose id already exists, the usual storage failure."""
        seen: set[str] = set()
        with self._read() as cur:
            for index, item in enumerate(items):
                event_id = item.envelope.event_id
                if event_id in seen or self._event_id_stored(cur, tenant_id, event_id):
                    return duplicate_event_id(index, event_id)
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
                EVENT_SELECT + " WHERE tenant_id = ? AND producer_id = ? AND idempotency_key = ?",
                (tenant_id, producer, key),
            ).fetchall()
        else:
            rows = []
            # A VALUES join probes the idempotency index once per key; a
            # row-value IN list would scan the tenant's log on SQLite.
            select = EVENT_SELECT.replace("SELECT ", "SELECT e.", 1).replace(", ", ", e.")
            select = select.replace(
                "FROM dg_event_log", "FROM (VALUES {marks}) AS k JOIN dg_event_log e"
            )
            for chunk in chunks(unique):
                params: list[Any] = []
                for producer, key in chunk:
                    params.extend((producer, key))
                params.append(tenant_id)
                sql = select.format(marks=", ".join("(?, ?)" for _ in chunk)) + (
                    " ON e.producer_id = k.column1 AND e.idempotency_key = k.column2"
                    " AND e.tenant_id = ?"
                )
                rows.extend(self._x(cur, sql, params).fetchall())
        for row in rows:
            event = event_from_row(row)
            found[(event.source.producer_id, event.idempotency_key)] = event
        return found

    # -- log reads -----------------------------------------------------------
    def event_id_at(self, tenant_id: str, log_seq: int) -> str | None:
        """The id of the event at ``log_seq``, read without decoding the
        event (whose stored payload may be what is wrong with it)."""
        with self._read() as cur:
            row = self._x(
                cur,
                "SELECT event_id FROM dg_event_log WHERE tenant_id = ? AND log_seq = ?",
                (tenant_id, log_seq),
            ).fetchone()
        return None if row is None else str(row[0])

    def list_events(
        self,
        tenant_id: str,
        since_log_seq: int | None = None,
        until_log_seq: int | None = None,
        event_type: str | None = None,
        trace_id: str | None = None,
        limit: int | None = None,
    ) -> list[StoredEvent]:
        if limit is not None and limit >= 0 and event_type is None and trace_id is None:
            until_log_seq = next_window(since_log_seq or 0, limit, until_log_seq)
        where, params = self._event_filter(
            tenant_id, since_log_seq, until_log_seq, event_type, trace_id
        )
        sql = EVENT_SELECT + where + " ORDER BY log_seq"
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
        sql = EVENT_SELECT + " WHERE tenant_id = ? AND trace_id = ?"
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
            return self._log_head_seq(cur, tenant_id)

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

    def tenants_in_log(self) -> list[str]:
        # The head table alone cannot be trusted here: deleting a tenant's
        # head row, or inserting rows for a tenant that never had one, would
        # hide that tenant from ``verify``. Reads the log's tenant index
        # whole, so it is for audits, not for the workers' polling.
        with self._read() as cur:
            rows = self._x(
                cur,
                "SELECT tenant_id FROM dg_log_head UNION "
                "SELECT tenant_id FROM dg_event_log ORDER BY tenant_id",
            ).fetchall()
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
