"""The PostgreSQL backend (production): many processes, one database.

Appends of a tenant serialize on its ``dg_log_head`` row (``FOR UPDATE``), so
log_seq is assigned max+1 under the lock and commits in the same order: no
gaps, and a reader never sees log_seq N+1 before N. Projectors of a tenant
serialize on a transaction-scoped advisory lock.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from decisiongraph.core.clock import Clock, format_timestamp, system_clock
from decisiongraph.core.envelope import StoredEvent
from decisiongraph.core.errors import (
    DecisionGraphError,
    EventSequenceInvalidError,
    IdempotencyConflictError,
    InvalidArgumentError,
    StorageError,
)
from decisiongraph.core.hashing import GENESIS_CHAIN_HASH
from decisiongraph.store.append_plan import IdemKey, Row, TraceHead
from decisiongraph.store.columns import EVENT_COLUMNS
from decisiongraph.store.migrations import migration_files
from decisiongraph.store.ownership import PG_TABLES, refuse_foreign, shown_target
from decisiongraph.store.sql_backend import EVENT_SELECT, Streamer, event_from_row
from decisiongraph.store.sql_base import SqlEventStore

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "dg_events"
_MIGRATION_LOCK = 0x4447_4D49_4752  # "DGMIGR": one migrator at a time
#: Seconds a cancel request may take to reach the server (it goes over a
#: connection of its own); a stop deadline must not hang on an unreachable one.
_CANCEL_TIMEOUT = 5.0
_COPY = f"COPY dg_event_log ({', '.join(EVENT_COLUMNS)}) FROM STDIN"
_INSERT = (
    f"INSERT INTO dg_event_log ({', '.join(EVENT_COLUMNS)}) "
    f"VALUES ({', '.join('%s' for _ in EVENT_COLUMNS)})"
)


def is_postgres_url(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


def advisory_key(*parts: str) -> int:
    """A stable signed 64-bit advisory-lock key for a name."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def translate_pg_error(exc: Exception) -> DecisionGraphError | None:
    """Spec 7.4: classify constraint failures by what they hit."""
    if not isinstance(exc, psycopg.Error):
        return None
    text = str(exc)
    constraint = getattr(getattr(exc, "diag", None), "constraint_name", None) or ""
    if isinstance(exc, pg_errors.UniqueViolation):
        if "idempotency" in constraint:
            return IdempotencyConflictError(f"Idempotency conflict: {text}")
        if "trace_seq" in constraint:
            return EventSequenceInvalidError(f"Duplicate trace_seq: {text}")
    return StorageError(f"PostgreSQL error: {text.strip()}")


_SWITCH_VALUES = {
    "1": True,
    "true": True,
    "on": True,
    "yes": True,
    "0": False,
    "false": False,
    "off": False,
    "no": False,
}


def notify_from_env() -> bool:
    """``DG_NOTIFY`` as a switch (default on).

    Spelled as an operator would (``off``, ``false``, ``no``, any case): a
    value we do not understand is refused rather than read as "on", since an
    operator who wrote ``DG_NOTIFY=off`` and still got NOTIFY traffic would
    never find out why.
    """
    raw = os.environ.get("DG_NOTIFY")
    if raw is None or not raw.strip():
        return True
    value = _SWITCH_VALUES.get(raw.strip().lower())
    if value is None:
        raise InvalidArgumentError(
            f"DG_NOTIFY must be one of 1/0, true/false, on/off, yes/no, not {raw!r}",
            details={"variable": "DG_NOTIFY"},
        )
    return value


_INTEGER_COLUMNS = frozenset({"log_seq", "last_log_seq", "event_count", "trace_seq"})


def _column_type(name: str) -> str:
    return "bigint" if name in _INTEGER_COLUMNS else "text"


class PostgresEventStore(SqlEventStore):
    """PostgreSQL implementation of the event store (psycopg 3)."""

    placeholder = "%s"
    server_side_writes = True
    db_epoch_sql = "EXTRACT(EPOCH FROM clock_timestamp())::float8"

    def __init__(
        self,
        url: str,
        *,
        clock: Clock = system_clock,
        migrate: bool = True,
        notify: bool | None = None,
        lock_timeout: float | None = None,
    ) -> None:
        """Open (and unless told otherwise migrate) the database at ``url``.

        ``lock_timeout``: seconds any statement waits for a lock before it
        fails (a lock timeout, which callers treat as passing trouble);
        None waits as long as PostgreSQL's own setting says.
        """
        # NOTIFY wakes workers in other processes; DG_NOTIFY=0 turns it off
        # (workers then find new events by polling alone). Read before
        # connecting, so a malformed value opens nothing.
        if notify is None:
            notify = notify_from_env()
        super().__init__(url, clock)
        self._notify = notify
        self._lock = threading.RLock()
        try:
            self._conn = psycopg.connect(url, autocommit=True)
            if lock_timeout is not None:
                self._conn.execute(
                    "SELECT set_config('lock_timeout', %s, false)",
                    (f"{int(lock_timeout * 1000)}ms",),
                )
            if migrate:
                self._refuse_foreign()
                self._migrate()
        except psycopg.Error as exc:
            raise StorageError(f"Cannot open PostgreSQL database: {exc}") from exc

    def _refuse_foreign(self) -> None:
        """Another application's tables in the current schema, and none of
        ours: not ours to migrate."""
        try:
            names = [str(row[0]) for row in self._conn.execute(PG_TABLES)]
            refuse_foreign(shown_target(self._url), names)
        except BaseException:
            self._conn.close()
            raise

    def _migrate(self) -> None:
        with self._write() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            applied = {row[0] for row in cur.execute("SELECT version FROM schema_migrations")}
            for version, name, sql in migration_files("postgres"):
                if version in applied:
                    continue
                cur.execute(sql.encode("utf-8"))
                cur.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (%s, %s, %s)",
                    (version, name, format_timestamp(self._clock())),
                )

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def connection_lost(self) -> bool:
        return self._conn.closed

    def cancel(self) -> None:
        """Ask the server to cancel the running statement (see
        :meth:`SqlBackend.cancel`): it fails with QueryCanceled, a transient
        error, and its transaction rolls back. A request that reaches an idle
        connection is ignored by the server. Not under ``self._lock``, which
        the thread running the statement holds."""
        try:
            self._conn.cancel_safe(timeout=_CANCEL_TIMEOUT)  # psycopg >= 3.2
        except Exception:
            log.debug("could not cancel the running statement", exc_info=True)

    @contextmanager
    def _write(self) -> Iterator[psycopg.Cursor[Any]]:
        with self._lock, self._conn.transaction(), self._conn.cursor() as cur:
            yield cur

    @contextmanager
    def _read(self) -> Iterator[psycopg.Cursor[Any]]:
        with self._lock, self._conn.cursor() as cur:
            yield cur

    @contextmanager
    def _reader(self) -> Iterator[Callable[[], AbstractContextManager[psycopg.Cursor[Any]]]]:
        """A second connection for reading the log ahead of a long catch-up."""
        with psycopg.connect(self._url, autocommit=True) as conn:

            @contextmanager
            def cursor() -> Iterator[psycopg.Cursor[Any]]:
                with conn.cursor() as cur:
                    yield cur

            yield cursor

    @contextmanager
    def _pipelined(self) -> Iterator[None]:
        # The server inserts one table's rows while the driver encodes the next.
        with self._conn.pipeline():
            yield

    @contextmanager
    def _savepoint(self, cur: psycopg.Cursor[Any]) -> Iterator[None]:
        with self._conn.transaction():
            yield

    def _lock_log_head(self, cur: psycopg.Cursor[Any], tenant_id: str) -> tuple[int, str]:
        select = "SELECT last_log_seq, chain_hash FROM dg_log_head WHERE tenant_id = %s FOR UPDATE"
        row = cur.execute(select, (tenant_id,)).fetchone()
        if row is None:  # the tenant's first append (racing ones meet in the upsert)
            cur.execute(
                "INSERT INTO dg_log_head (tenant_id, last_log_seq, chain_hash) "
                "VALUES (%s, 0, %s) ON CONFLICT (tenant_id) DO NOTHING",
                (tenant_id, GENESIS_CHAIN_HASH),
            )
            row = cur.execute(select, (tenant_id,)).fetchone()
        assert row is not None
        return (int(row[0]), str(row[1]))

    def _announce(self, cur: psycopg.Cursor[Any], tenant_id: str, last_log_seq: int) -> None:
        if self._notify:
            cur.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, f"{last_log_seq}:{tenant_id}"))

    def _lock_projections(
        self, cur: psycopg.Cursor[Any], tenant_id: str, names: Sequence[str]
    ) -> None:
        # Sorted, so two appliers of overlapping sets can never deadlock.
        for name in sorted(names):
            cur.execute(
                "SELECT pg_advisory_xact_lock(%s)", (advisory_key("projection", tenant_id, name),)
            )

    def _trace_heads(
        self, cur: psycopg.Cursor[Any], tenant_id: str, trace_ids: Sequence[str]
    ) -> dict[str, TraceHead]:
        rows = cur.execute(
            "SELECT DISTINCT ON (trace_id) trace_id, trace_seq, event_type FROM dg_event_log "
            "WHERE tenant_id = %s AND trace_id = ANY(%s) ORDER BY trace_id, trace_seq DESC",
            (tenant_id, list(trace_ids)),
        ).fetchall()
        return {row[0]: (int(row[1]), str(row[2])) for row in rows}

    def _find_existing(
        self, cur: psycopg.Cursor[Any], tenant_id: str, keys: Sequence[IdemKey]
    ) -> dict[IdemKey, StoredEvent]:
        """Index probes for the batch's keys (array parameters, exact pairs kept).

        ``= ANY`` on both key columns lets the planner walk the idempotency
        index; a join against an unnested array tends to become a hash join
        over the whole log as it grows.
        """
        unique = set(keys)
        rows = cur.execute(
            EVENT_SELECT + " WHERE tenant_id = %s AND producer_id = ANY(%s) "
            "AND idempotency_key = ANY(%s)",
            (tenant_id, sorted({p for p, _ in unique}), sorted({i for _, i in unique})),
        ).fetchall()
        found: dict[IdemKey, StoredEvent] = {}
        for row in rows:
            if (row[8], row[15]) in unique:
                event = event_from_row(row)
                found[(event.source.producer_id, event.idempotency_key)] = event
        return found

    @contextmanager
    def _event_sink(
        self, cur: psycopg.Cursor[Any], expected: int
    ) -> Iterator[Callable[[Row], None]]:
        """Batches stream into COPY as they are planned, so the server indexes
        rows while Python still hashes the rest; a lone event is an INSERT
        (COPY costs an extra round trip)."""
        if expected == 1:
            with super()._event_sink(cur, expected) as sink:
                yield sink
            return
        with cur.copy(_COPY) as copy:
            yield copy.write_row

    def _insert_events(self, cur: psycopg.Cursor[Any], rows: Sequence[Row]) -> None:
        for row in rows:  # only a lone event gets here (see _event_sink)
            cur.execute(_INSERT, row)

    # Set-based projection writes: one statement per table and batch, the
    # rows passed as one array per column (executemany pays a protocol round
    # of work per row in the driver).
    def _insert_rows(
        self,
        cur: psycopg.Cursor[Any],
        table: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        conflict: str = "",
    ) -> None:
        if not rows:
            return
        arrays = [list(column) for column in zip(*rows, strict=True)]
        casts = ", ".join(f"%b::{_column_type(name)}[]" for name in columns)
        cur.execute(
            f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM unnest({casts}) {conflict}",
            arrays,
        )

    def _delete_traces(
        self, cur: psycopg.Cursor[Any], table: str, tenant_id: str, trace_ids: Sequence[str]
    ) -> None:
        if trace_ids:
            cur.execute(
                f"DELETE FROM {table} WHERE tenant_id = %s AND trace_id = ANY(%b::text[])",
                (tenant_id, list(trace_ids)),
            )

    def _finish_summaries(
        self,
        cur: psycopg.Cursor[Any],
        table: str,
        rows: Sequence[tuple[Any, str, int, str, str]],
    ) -> None:
        if not rows:
            return
        outcome, finished_at, log_seq, tenant, trace = (list(c) for c in zip(*rows, strict=True))
        cur.execute(
            f"UPDATE {table} AS s SET outcome = v.outcome, finished_at = v.finished_at, "
            "event_count = s.event_count + 1, last_log_seq = v.log_seq "
            "FROM unnest(%b::text[], %b::text[], %b::bigint[], %b::text[], %b::text[]) "
            "AS v(outcome, finished_at, log_seq, tenant_id, trace_id) "
            "WHERE s.tenant_id = v.tenant_id AND s.trace_id = v.trace_id",
            (outcome, finished_at, log_seq, tenant, trace),
        )

    def _stream(self, sql: str, params: Sequence[Any]) -> Iterator[Sequence[Any]]:
        # A private connection and a server-side cursor: bounded memory, and
        # the shared connection stays free for other work meanwhile.
        with (
            psycopg.connect(self._url) as conn,
            conn.transaction(),
            conn.cursor(name=f"dg_stream_{uuid.uuid4().hex}") as cur,
        ):
            cur.itersize = 5000
            cur.execute(sql, params)
            yield from cur

    @contextmanager
    def _snapshot(self) -> Iterator[Streamer]:
        # A private connection in one REPEATABLE READ transaction: every query
        # sees the snapshot taken by the first, and the shared connection
        # stays free meanwhile.
        with psycopg.connect(self._url) as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            with conn.transaction():

                def stream(sql: str, params: Sequence[Any]) -> Iterator[Sequence[Any]]:
                    with conn.cursor(name=f"dg_snapshot_{uuid.uuid4().hex}") as cur:
                        cur.itersize = 5000
                        cur.execute(sql, params)
                        yield from cur

                yield stream

    def _translate_error(self, exc: Exception) -> DecisionGraphError | None:
        return translate_pg_error(exc)
