"""What the projection runtime keeps in the database, over SQL.

Leases say which worker owns a (tenant, projection); dead letters hold events
a projection could not apply (it stops there); the state table carries the
last error and a rebuild in progress; the audit log records every operator
action. Online rebuilds fill the shadow tables and swap them in atomically.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import astuple, dataclass
from typing import Any

from decisiongraph.core.errors import ConflictError, InvalidArgumentError, NotFoundError
from decisiongraph.core.operator_records import AuditEntry, DeadLetter, check_dead_letter_status
from decisiongraph.projections.digests import Digests, array_digest
from decisiongraph.projections.rows import PROJECTION_NAMES
from decisiongraph.store.columns import EVENT_COLUMNS
from decisiongraph.store.sql_backend import Cursor
from decisiongraph.store.sql_projector import SqlProjector
from decisiongraph.store.tables import LIVE, SHADOW

#: Seconds without a heartbeat after which a rebuild claim has lapsed.
REBUILD_CLAIM_TTL = 3.0

DEAD_LETTER_COLUMNS = (
    "id, tenant_id, projection_name, log_seq, event_id, error_code, message, attempts, "
    "first_seen_at, last_seen_at, status, resolved_at, resolution"
)


#: Row ids are signed 64-bit integers on both backends.
_ID_RANGE = range(-(2**63), 2**63)


def _check_letter_id(dead_letter_id: int) -> None:
    """A dead letter id is an int (a bool or a string is a caller's bug)."""
    if isinstance(dead_letter_id, bool) or not isinstance(dead_letter_id, int):
        raise InvalidArgumentError(
            f"A dead letter id must be an integer, not {dead_letter_id!r}", details={"field": "id"}
        )


def _storable(dead_letter_id: int) -> bool:
    """Whether a row could have this id (SQLite's driver overflows past 64 bits)."""
    return dead_letter_id in _ID_RANGE


def _check_actor(actor: str) -> None:
    """The audit log is append-only: an entry naming nobody (an empty or
    blank actor) could never be corrected, so it is never written."""
    if not isinstance(actor, str) or not actor.strip():
        raise InvalidArgumentError(
            "An actor is required: the audit log must name who acted", details={"field": "actor"}
        )


@dataclass(frozen=True, slots=True)
class Lease:
    tenant_id: str
    projection_name: str
    owner: str
    expires_in: float  # seconds left by the database's clock (negative: expired)


@dataclass(frozen=True, slots=True)
class LiveSnapshot:
    """The live projections as of one committed state: what a comparison with
    a rebuild must reproduce, and the operator skips they honoured."""

    cursors: dict[str, int]
    digests: Digests
    skipped: tuple[DeadLetter, ...]
    #: The policy-evaluation index, which no spec digest covers (8.6).
    policy_index: str = ""


@dataclass(frozen=True, slots=True)
class ProjectionState:
    last_error: str | None
    last_error_at: str | None
    rebuilding: bool
    rebuild_owner: str | None
    rebuild_started_at: str | None
    updated_at: str | None


class SqlRuntime(SqlProjector):
    """Leases, dead letters, worker state, audit and online rebuilds."""

    #: SQL for "now" in epoch seconds by the database's own clock.
    db_epoch_sql = "(julianday('now') - 2440587.5) * 86400.0"

    # -- leases ----------------------------------------------------------------
    def acquire_lease(self, tenant_id: str, projection: str, owner: str, ttl: float) -> bool:
        """Take or renew the lease; True when ``owner`` holds it afterwards."""
        now = self.db_epoch_sql
        with self._write() as cur:
            self._x(
                cur,
                "INSERT INTO dg_projection_lease (tenant_id, projection_name, owner, acquired_at, "
                f"expires_at) VALUES (?, ?, ?, {now}, {now} + ?) "
                "ON CONFLICT (tenant_id, projection_name) DO UPDATE SET "
                "owner = excluded.owner, expires_at = excluded.expires_at, acquired_at = CASE "
                "WHEN dg_projection_lease.owner = excluded.owner "
                "THEN dg_projection_lease.acquired_at ELSE excluded.acquired_at END "
                f"WHERE dg_projection_lease.owner = excluded.owner "
                f"OR dg_projection_lease.expires_at < {now}",
                (tenant_id, projection, owner, ttl),
            )
            row = self._x(
                cur,
                "SELECT owner FROM dg_projection_lease WHERE tenant_id = ? AND projection_name = ?",
                (tenant_id, projection),
            ).fetchone()
        return row is not None and row[0] == owner

    def release_lease(self, tenant_id: str, projection: str, owner: str) -> None:
        with self._write() as cur:
            self._x(
                cur,
                "DELETE FROM dg_projection_lease WHERE tenant_id = ? AND projection_name = ? "
                "AND owner = ?",
                (tenant_id, projection, owner),
            )

    def leases(self, tenant_id: str) -> dict[str, Lease]:
        with self._read() as cur:
            rows = self._x(
                cur,
                f"SELECT projection_name, owner, expires_at - {self.db_epoch_sql} "
                "FROM dg_projection_lease WHERE tenant_id = ?",
                (tenant_id,),
            ).fetchall()
        return {row[0]: Lease(tenant_id, row[0], row[1], float(row[2])) for row in rows}

    # -- worker state ------------------------------------------------------------
    def _upsert_state(self, cur: Cursor, tenant_id: str, projection: str, **values: Any) -> None:
        columns = ["tenant_id", "projection_name", "updated_at", *values]
        params = [tenant_id, projection, self._now(), *values.values()]
        updates = ", ".join(f"{name} = excluded.{name}" for name in columns[2:])
        self._x(
            cur,
            f"INSERT INTO dg_projection_state ({', '.join(columns)}) VALUES "
            f"({', '.join('?' for _ in columns)}) "
            f"ON CONFLICT (tenant_id, projection_name) DO UPDATE SET {updates}",
            params,
        )

    def set_projection_error(self, tenant_id: str, projection: str, error: str | None) -> None:
        """Record (or clear, with None) the last error a worker met."""
        with self._write() as cur:
            self._upsert_state(
                cur,
                tenant_id,
                projection,
                last_error=error,
                last_error_at=None if error is None else self._now(),
            )

    def projection_states(self, tenant_id: str) -> dict[str, ProjectionState]:
        with self._read() as cur:
            rows = self._x(
                cur,
                "SELECT projection_name, last_error, last_error_at, "
                f"rebuilding = 1 AND rebuild_heartbeat_at > {self.db_epoch_sql} - ?, "
                "rebuild_owner, rebuild_started_at, updated_at FROM dg_projection_state "
                "WHERE tenant_id = ?",
                (REBUILD_CLAIM_TTL, tenant_id),
            ).fetchall()
        return {
            row[0]: ProjectionState(row[1], row[2], bool(row[3]), row[4], row[5], row[6])
            for row in rows
        }

    def cursor_updated_at(self, tenant_id: str) -> dict[str, str]:
        with self._read() as cur:
            rows = self._x(
                cur,
                "SELECT projection_name, updated_at FROM dg_projection_cursor WHERE tenant_id = ?",
                (tenant_id,),
            ).fetchall()
        return {row[0]: row[1] for row in rows}

    def recorded_at(self, tenant_id: str, log_seq: int) -> str | None:
        """When the event at ``log_seq`` was stored (lag in seconds starts there)."""
        with self._read() as cur:
            row = self._x(
                cur,
                "SELECT recorded_at FROM dg_event_log WHERE tenant_id = ? AND log_seq = ?",
                (tenant_id, log_seq),
            ).fetchone()
        return None if row is None else str(row[0])

    # -- dead letters ------------------------------------------------------------
    def add_dead_letter(
        self,
        tenant_id: str,
        projection: str,
        log_seq: int,
        event_id: str,
        code: str,
        message: str,
        attempts: int,
        first_seen_at: str,
    ) -> DeadLetter:
        """Park ``log_seq`` for ``projection``; a repeat failure bumps attempts."""
        now = self._now()
        with self._write() as cur:
            self._x(
                cur,
                "INSERT INTO dg_dead_letter (tenant_id, projection_name, log_seq, event_id, "
                "error_code, message, attempts, first_seen_at, last_seen_at, status) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'open') "
                "ON CONFLICT (tenant_id, projection_name, log_seq) DO UPDATE SET "
                "error_code = excluded.error_code, message = excluded.message, "
                "attempts = dg_dead_letter.attempts + excluded.attempts, "
                "last_seen_at = excluded.last_seen_at, status = 'open', resolved_at = NULL, "
                "resolution = NULL",
                (
                    tenant_id,
                    projection,
                    log_seq,
                    event_id,
                    code,
                    message,
                    attempts,
                    first_seen_at,
                    now,
                ),
            )
            self._upsert_state(
                cur, tenant_id, projection, last_error=f"{code}: {message}", last_error_at=now
            )
        found = self.dead_letters(tenant_id, projection=projection, log_seq=log_seq)
        return found[0]

    def dead_letters(
        self,
        tenant_id: str | None = None,
        *,
        projection: str | None = None,
        status: str | None = None,
        log_seq: int | None = None,
    ) -> list[DeadLetter]:
        check_dead_letter_status(status)
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("tenant_id", tenant_id),
            ("projection_name", projection),
            ("status", status),
            ("log_seq", log_seq),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        with self._read() as cur:
            rows = self._x(
                cur, f"SELECT {DEAD_LETTER_COLUMNS} FROM dg_dead_letter{where} ORDER BY id", params
            ).fetchall()
        return [DeadLetter(*row) for row in rows]

    def copy_skips(self, letters: Sequence[DeadLetter]) -> None:
        """Record another store's operator skips here, as they are.

        A replica rebuilt for comparison must pass over the events the live
        projections were told to skip, or it would differ from them forever.
        """
        if not letters:
            return
        columns = DEAD_LETTER_COLUMNS.removeprefix("id, ")
        with self._write() as cur:
            self._many(
                cur,
                f"INSERT INTO dg_dead_letter ({columns}) VALUES "
                f"({', '.join('?' for _ in columns.split(', '))})",
                [astuple(letter)[1:] for letter in letters if letter.status == "skipped"],
            )

    def live_snapshot(self, tenant_id: str) -> LiveSnapshot:
        """Cursors, digests and skips of the live projections, all read in one
        snapshot: workers may commit batches meanwhile, but what is returned
        is one state they passed through (so a comparison works on a live
        system, not only when appends pause)."""
        with self._snapshot() as stream:
            cursors = dict.fromkeys(PROJECTION_NAMES, 0)
            for name, seq in stream(
                self._sql(
                    "SELECT projection_name, last_log_seq FROM dg_projection_cursor "
                    "WHERE tenant_id = ?"
                ),
                (tenant_id,),
            ):
                if name in cursors:
                    cursors[str(name)] = int(seq)
            skipped = tuple(
                DeadLetter(*row)
                for row in stream(
                    self._sql(
                        f"SELECT {DEAD_LETTER_COLUMNS} FROM dg_dead_letter WHERE tenant_id = ? "
                        "AND status = 'skipped' ORDER BY id"
                    ),
                    (tenant_id,),
                )
            )
            digests = self.digests(tenant_id, LIVE, stream)
            policy_index = array_digest(self.iter_policy_rows(tenant_id, LIVE, stream))
        return LiveSnapshot(cursors, digests, skipped, policy_index)

    def get_dead_letter(self, tenant_id: str, dead_letter_id: int) -> DeadLetter:
        """The tenant's letter ``dead_letter_id``, or ``DG_ERR_NOT_FOUND``.

        A letter of another tenant is reported as such (without naming that
        tenant: this message reaches API callers), so an operator who forgot
        ``--tenant`` is not told the letter does not exist. An id no row can
        have (beyond 64 bits) is simply not found, on SQLite as on
        PostgreSQL, instead of overflowing the driver.
        """
        _check_letter_id(dead_letter_id)
        row = None
        if _storable(dead_letter_id):
            with self._read() as cur:
                row = self._x(
                    cur,
                    f"SELECT {DEAD_LETTER_COLUMNS} FROM dg_dead_letter "
                    "WHERE tenant_id = ? AND id = ?",
                    (tenant_id, dead_letter_id),
                ).fetchone()
        if row is None:
            owner = self.dead_letter_tenant(dead_letter_id)
            if owner is not None and owner != tenant_id:
                raise NotFoundError(
                    f"Dead letter {dead_letter_id} belongs to another tenant, "
                    f"not to tenant '{tenant_id}'",
                    details={"id": dead_letter_id, "tenant": tenant_id},
                )
            raise NotFoundError(f"No dead letter {dead_letter_id}", details={"id": dead_letter_id})
        return DeadLetter(*row)

    def dead_letter_tenant(self, dead_letter_id: int) -> str | None:
        """The tenant a letter belongs to (None: no such letter).

        For operators, who see every tenant (the CLI); never answer an API
        caller with it.
        """
        _check_letter_id(dead_letter_id)
        if not _storable(dead_letter_id):
            return None
        with self._read() as cur:
            row = self._x(
                cur, "SELECT tenant_id FROM dg_dead_letter WHERE id = ?", (dead_letter_id,)
            ).fetchone()
        return None if row is None else str(row[0])

    def resolve_dead_letter(
        self,
        tenant_id: str,
        dead_letter_id: int,
        *,
        action: str,
        actor: str,
        reason: str,
        details: Mapping[str, Any] | None = None,
    ) -> DeadLetter:
        """``retry`` (after a fix) or ``skip`` (never silent: audited) a dead letter.

        ``details`` (who asked: request and key ids) go into the audit entry
        beside the letter's own."""
        if action not in ("retry", "skip"):
            raise InvalidArgumentError("action must be 'retry' or 'skip'")
        if not reason or not reason.strip():
            raise InvalidArgumentError("A reason is required")
        _check_actor(actor)
        letter = self.get_dead_letter(tenant_id, dead_letter_id)
        if letter.status not in ("open", "retry"):
            raise ConflictError(
                f"Dead letter {dead_letter_id} is already {letter.status}",
                details={"status": letter.status},
            )
        status = "retry" if action == "retry" else "skipped"
        now = self._now()
        with self._write() as cur:
            self._x(
                cur,
                "UPDATE dg_dead_letter SET status = ?, resolution = ?, resolved_at = ? "
                "WHERE tenant_id = ? AND id = ?",
                (status, reason, now if status == "skipped" else None, tenant_id, dead_letter_id),
            )
            if status == "skipped":  # the event is settled: its error is no longer news
                self._upsert_state(
                    cur, tenant_id, letter.projection_name, last_error=None, last_error_at=None
                )
            self._audit(
                cur,
                tenant_id,
                actor,
                f"dead_letter.{action}",
                f"{letter.projection_name}@{letter.log_seq}",
                reason,
                {**(details or {}), "dead_letter_id": dead_letter_id, "event_id": letter.event_id},
            )
        return self.get_dead_letter(tenant_id, dead_letter_id)

    def mark_dead_letters_resolved(
        self, tenant_id: str, projection: str, up_to: int, *, include_open: bool = False
    ) -> None:
        """Letters being retried whose event has now been applied are done;
        with ``include_open``, open ones too (a rebuild applied past them)."""
        statuses = "('retry', 'open')" if include_open else "('retry')"
        with self._write() as cur:
            self._x(
                cur,
                "UPDATE dg_dead_letter SET status = 'resolved', resolved_at = ? "
                f"WHERE tenant_id = ? AND projection_name = ? AND status IN {statuses} "
                "AND log_seq <= ?",
                (self._now(), tenant_id, projection, up_to),
            )
            self._upsert_state(cur, tenant_id, projection, last_error=None, last_error_at=None)

    # -- audit -------------------------------------------------------------------
    def _audit(
        self,
        cur: Cursor,
        tenant_id: str,
        actor: str,
        action: str,
        target: str,
        reason: str,
        details: dict[str, Any],
    ) -> None:
        _check_actor(actor)  # the callers check first; this is the last line of defence
        self._x(
            cur,
            "INSERT INTO dg_audit_log (tenant_id, at, actor, action, target, reason, details_json) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                tenant_id,
                self._now(),
                actor,
                action,
                target,
                reason,
                json.dumps(details, sort_keys=True),
            ),
        )

    def record_audit(
        self,
        tenant_id: str,
        *,
        actor: str,
        action: str,
        target: str,
        reason: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        _check_actor(actor)  # before the transaction: a refusal writes nothing
        with self._write() as cur:
            self._audit(cur, tenant_id, actor, action, target, reason, details or {})

    def audit_log(self, tenant_id: str, limit: int = 100) -> list[AuditEntry]:
        with self._read() as cur:
            rows = self._x(
                cur,
                "SELECT id, tenant_id, at, actor, action, target, reason, details_json "
                "FROM dg_audit_log WHERE tenant_id = ? ORDER BY id DESC LIMIT ?",
                (tenant_id, limit),
            ).fetchall()
        return [
            AuditEntry(row[0], row[1], row[2], row[3], row[4], row[5], row[6], json.loads(row[7]))
            for row in rows
        ]

    # -- online rebuild ----------------------------------------------------------
    def begin_rebuild(self, tenant_id: str, projection: str, owner: str) -> None:
        """Claim the rebuild of a projection and empty its shadow tables.

        A claim whose rebuilder stopped beating (see :meth:`beat_rebuild`)
        for ``REBUILD_CLAIM_TTL`` seconds has lapsed and may be taken over.
        """
        names = self._projection_names([projection])
        with self._write() as cur:
            row = self._x(
                cur,
                f"SELECT rebuilding, rebuild_owner, rebuild_heartbeat_at > {self.db_epoch_sql} - ? "
                "FROM dg_projection_state WHERE tenant_id = ? AND projection_name = ?",
                (REBUILD_CLAIM_TTL, tenant_id, projection),
            ).fetchone()
            if row is not None and row[0] and row[2]:
                raise ConflictError(
                    f"{projection} of tenant {tenant_id} is already being rebuilt by {row[1]}",
                    details={"owner": row[1]},
                )
            self._upsert_state(
                cur,
                tenant_id,
                projection,
                rebuilding=1,
                rebuild_owner=owner,
                rebuild_started_at=self._now(),
            )
            self._beat(cur, tenant_id, projection, owner)
        self._reset(tenant_id, names, SHADOW)

    def _beat(self, cur: Cursor, tenant_id: str, projection: str, owner: str) -> None:
        self._x(
            cur,
            f"UPDATE dg_projection_state SET rebuild_heartbeat_at = {self.db_epoch_sql} "
            "WHERE tenant_id = ? AND projection_name = ? AND rebuild_owner = ? AND rebuilding = 1",
            (tenant_id, projection, owner),
        )

    def beat_rebuild(self, tenant_id: str, projection: str, owner: str) -> None:
        """Keep a rebuild claim alive (the rebuilder calls this every second)."""
        with self._write() as cur:
            self._beat(cur, tenant_id, projection, owner)

    def rebuild_step(self, tenant_id: str, projection: str, batch_size: int) -> int:
        """Apply one batch to the shadow copy; returns events read (0: caught up)."""
        cursor = self._shadow_cursor(tenant_id, projection)
        return self._catch_up(tenant_id, (projection,), batch_size, cursor + batch_size, SHADOW)

    def shadow_cursor(self, tenant_id: str, projection: str) -> int:
        return self._shadow_cursor(tenant_id, projection)

    def _shadow_cursor(self, tenant_id: str, projection: str) -> int:
        with self._read() as cur:
            return self._cursors(cur, tenant_id, SHADOW)[projection]

    def swap_rebuild(self, tenant_id: str, projection: str) -> int:
        """Finish the shadow copy and make it live, in one transaction.

        Under the projection's lock the shadow catches up to the head, then
        replaces the live rows and cursor: readers see the old rows or the
        new ones, never a mix. Returns the live cursor afterwards.
        """
        names = (projection,)
        with self._write() as cur:
            self._lock_projections(cur, tenant_id, names)
            while True:
                start = self._cursors(cur, tenant_id, SHADOW)[projection]
                events, bad = self._fetch_after(cur, tenant_id, start, 5000)
                if not events:
                    break
                skip = self._skipped(cur, tenant_id, start, events[-1].log_seq).get(
                    projection, frozenset()
                )
                self._apply(cur, tenant_id, events, start, names, t=SHADOW, skip=skip, bad=bad)
            seq = self._cursors(cur, tenant_id, SHADOW)[projection]
            for live_table, shadow_table in zip(
                LIVE.of(projection), SHADOW.of(projection), strict=True
            ):
                columns = self._columns_of(live_table)
                self._x(cur, f"DELETE FROM {live_table} WHERE tenant_id = ?", (tenant_id,))
                self._x(
                    cur,
                    f"INSERT INTO {live_table} ({columns}) SELECT {columns} FROM {shadow_table} "
                    "WHERE tenant_id = ?",
                    (tenant_id,),
                )
                self._x(cur, f"DELETE FROM {shadow_table} WHERE tenant_id = ?", (tenant_id,))
            self._advance(cur, tenant_id, names, seq, LIVE)
            self._x(
                cur,
                "DELETE FROM dg_shadow_projection_cursor WHERE tenant_id = ? "
                "AND projection_name = ?",
                (tenant_id, projection),
            )
        return seq

    def end_rebuild(self, tenant_id: str, projection: str, owner: str) -> None:
        """Release ``owner``'s rebuild claim (also after a failed rebuild).

        A claim taken over by another rebuilder meanwhile is left alone.
        """
        with self._write() as cur:
            self._x(
                cur,
                "UPDATE dg_projection_state SET rebuilding = 0, rebuild_owner = NULL, "
                "rebuild_started_at = NULL, rebuild_heartbeat_at = NULL, updated_at = ? "
                "WHERE tenant_id = ? AND projection_name = ? AND rebuild_owner = ?",
                (self._now(), tenant_id, projection, owner),
            )

    def shadow_digests(self, tenant_id: str) -> Digests:
        return self.digests(tenant_id, SHADOW)

    @staticmethod
    def _columns_of(table: str) -> str:
        base = table.replace("dg_shadow_", "dg_", 1)
        return {
            "dg_cg_nodes": (
                "tenant_id, node_id, node_type, trace_id, log_seq, created_at, metadata_json"
            ),
            "dg_cg_edges": (
                "tenant_id, edge_id, edge_type, from_node_id, to_node_id, trace_id, log_seq, "
                "created_at, metadata_json"
            ),
            "dg_trace_summary": (
                "tenant_id, trace_id, workflow, title, primary_entity_type, primary_entity_id, "
                "outcome, started_at, finished_at, event_count, last_log_seq"
            ),
            "dg_policy_eval_index": (
                "tenant_id, index_id, trace_id, policy_id, policy_version, log_seq, created_at"
            ),
            "dg_precedent_index": (
                "tenant_id, source_event_id, log_seq, trace_id, policy_id, policy_version, "
                "exception_id, primary_entity_type, primary_entity_system, primary_entity_id"
            ),
        }[base]

    # -- raw rows (replicas for replay and comparison) ---------------------------
    def iter_raw_rows(
        self, tenant_id: str, until_log_seq: int | None = None
    ) -> Iterator[Sequence[Any]]:
        """Stored rows in ``EVENT_COLUMNS`` order, streamed, up to a position."""
        sql = f"SELECT {', '.join(EVENT_COLUMNS)} FROM dg_event_log WHERE tenant_id = ?"
        params: list[Any] = [tenant_id]
        if until_log_seq is not None:
            sql += " AND log_seq <= ?"
            params.append(until_log_seq)
        return self._stream(self._sql(sql + " ORDER BY log_seq"), params)
