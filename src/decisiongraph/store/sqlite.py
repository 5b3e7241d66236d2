"""The embedded SQLite backend (the default): one file or ``:memory:``.

One connection writes for the process, guarded by a lock; writes use
``BEGIN IMMEDIATE`` so the database-wide write lock is the tenant append lock,
which keeps log_seq gap-free and in commit order. Concurrent appends share
transactions (see :mod:`decisiongraph.store.group_commit`). Reads use that
connection too unless another thread holds it, in which case they go to a
read-only side connection (:mod:`decisiongraph.store.sqlite_readers`).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

from decisiongraph.core.clock import Clock, format_timestamp, system_clock
from decisiongraph.core.envelope import StoredEvent
from decisiongraph.core.errors import (
    DecisionGraphError,
    EventSequenceInvalidError,
    StorageError,
)
from decisiongraph.core.event_types import TRACE_FINISHED
from decisiongraph.core.hashing import GENESIS_CHAIN_HASH
from decisiongraph.core.validation import ValidatedEvent
from decisiongraph.store import log_keys
from decisiongraph.store.append_cache import AppendCache
from decisiongraph.store.append_plan import AppendPlan, IdemKey, Row, TraceHead
from decisiongraph.store.chain import ChainProblem
from decisiongraph.store.columns import EVENT_COLUMNS
from decisiongraph.store.group_commit import Arrival, Arrivals, QueuedAppend, take_group
from decisiongraph.store.migrations import migration_files
from decisiongraph.store.ownership import SQLITE_TABLES, refuse_foreign
from decisiongraph.store.sql_backend import Streamer, chunks, event_from_row
from decisiongraph.store.sql_base import SqlEventStore
from decisiongraph.store.sql_log import KeyTaken, duplicate_event_id
from decisiongraph.store.sqlite_checkpoint import Checkpointer
from decisiongraph.store.sqlite_readers import ReadConnections, WriterLock, open_read_only

log = logging.getLogger(__name__)

# Rows carry EVENT_COLUMNS; the insert adds their digests (see log_keys).
_KEYED_COLUMNS = (*EVENT_COLUMNS, "event_key", "idem_key")
_INSERT = (
    f"INSERT INTO dg_event_log ({', '.join(_KEYED_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _KEYED_COLUMNS)})"
)


def translate_sqlite_error(exc: Exception) -> DecisionGraphError | None:
    """Spec 7.4: classify constraint failures by what they hit."""
    if not isinstance(exc, sqlite3.Error):
        return None
    text = str(exc)
    if "trace_seq" in text:
        return EventSequenceInvalidError(f"Duplicate trace_seq: {text}")
    return StorageError(f"SQLite error: {text}")


CACHE_KIB = 65_536  # 64 MiB of page cache per connection
# While a long catch-up runs, its transactions dirty pages all over the
# projections' random-keyed indexes; once those outgrow the cache, SQLite
# spills half-written pages to the WAL and rewrites them later. A quarter of
# a GiB for the duration took a 1M-event rebuild from 69 s to 57 s (peak
# RSS 144 -> 356 MB); the cache shrinks back when the catch-up ends.
BULK_CACHE_KIB = 262_144


class SQLiteEventStore(SqlEventStore):
    """SQLite implementation of the event store."""

    # Each commit writes every index page its transaction dirtied to the WAL,
    # and a batch of projected events dirties pages all over the random-keyed
    # indexes: one commit per three batches of 5,000 wrote half the bytes of
    # a 100k rebuild (749 -> 382 MB) and took 7% off its time. (PostgreSQL,
    # which overlaps the next batch's fold with the server's writes, is
    # faster per batch.)
    catch_up_commit_events = 15_000

    def __init__(
        self,
        path: str | Path = ":memory:",
        *,
        clock: Clock = system_clock,
        read_only: bool = False,
        scratch: bool = False,
        busy_timeout: float = 30.0,
    ) -> None:
        """Open (creating and migrating) a database file, or ``:memory:``.

        ``scratch`` is for throwaway files (replay replicas): the rollback
        journal stays in memory and nothing is synced, since a crash only
        loses a file nobody keeps. ``busy_timeout`` is how many seconds a
        write waits for another process's write lock before it fails with
        "database is locked" (a projection worker then retries later).
        """
        path = str(path)
        super().__init__(path, clock)
        self._lock = WriterLock()
        self._bulk_depth = 0  # long catch-ups running (see _bulk_writes)
        self._read_only = read_only
        self._cache = AppendCache()
        self._digests = log_keys.AppendDigests()
        self._queue: deque[QueuedAppend] = deque()
        self._arrivals = Arrivals()
        self._validating = threading.local()  # .arrival: this thread's append on its way
        self._private = path == ":memory:"
        self._path = path
        self._wal = False
        self._readers: ReadConnections | None = None
        self._checkpointer: Checkpointer | None = None
        try:
            if read_only:
                uri = f"file:{quote(str(Path(path).resolve()))}?mode=ro"
                self._conn = sqlite3.connect(
                    uri, uri=True, isolation_level=None, check_same_thread=False
                )
                self._conn.execute("PRAGMA query_only = ON")
            else:
                self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
                self._refuse_foreign()
                if scratch:
                    self._conn.execute("PRAGMA journal_mode = MEMORY")
                    self._conn.execute("PRAGMA synchronous = OFF")
                elif path != ":memory:" and not path.startswith("file::memory:"):
                    self._conn.execute("PRAGMA journal_mode = WAL")
                    self._wal = True
                    self._conn.execute("PRAGMA synchronous = NORMAL")
                    # Checkpoints run beside the writer (sqlite_checkpoint);
                    # SQLite's own, inside a commit, is the backstop for a
                    # log that thread cannot rewind. Rare and large: each is
                    # an fsync, and a page rewritten by several batches is
                    # copied back once. The log is removed on close.
                    self._conn.execute("PRAGMA wal_autocheckpoint = 100000")
                self._conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
                self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
                self._conn.execute("PRAGMA foreign_keys = ON")
                # For migrations that index digests of existing rows.
                for name, args, digest in (
                    ("dg_event_key", 2, log_keys.event_digest),
                    ("dg_idem_key", 3, log_keys.idem_digest),
                ):
                    self._conn.create_function(name, args, digest, deterministic=True)
                self._migrate()  # with temp files on disk: an upgrade may rewrite the log
                self._conn.execute("PRAGMA temp_store = MEMORY")
                if self._wal:
                    # Resolved now: side connections open later, perhaps after
                    # the process has changed its working directory.
                    self._path = str(Path(path).resolve())
                    self._readers = ReadConnections(self._path)
                    self._checkpointer = self._start_checkpointer()
        except sqlite3.Error as exc:
            raise StorageError(f"Cannot open SQLite database '{path}': {exc}") from exc

    def _refuse_foreign(self) -> None:
        """Before the first write (even the switch to WAL): another
        application's database is not ours to migrate."""
        try:
            names = [str(row[0]) for row in self._conn.execute(SQLITE_TABLES)]
            refuse_foreign(self._path, names)
        except BaseException:
            self._conn.close()
            raise

    def _start_checkpointer(self) -> Checkpointer:
        """The log's checkpoints, beside this store's writer; stopped when the
        store is closed, or collected unclosed (the thread holds no reference
        to the store)."""
        me = weakref.ref(self)

        def bulk_running() -> bool:
            store = me()
            return store is not None and store._bulk_depth > 0

        checkpointer = Checkpointer(self._path, self._lock, paused=bulk_running)
        weakref.finalize(self, checkpointer.close)
        return checkpointer

    def _migrate(self) -> None:
        with self._write() as cur:
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            applied = {row[0] for row in cur.execute("SELECT version FROM schema_migrations")}
            for version, name, sql in migration_files("sqlite"):
                if version in applied:
                    continue
                for statement in _split_statements(sql):
                    cur.execute(statement)
                cur.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (version, name, format_timestamp(self._clock())),
                )

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
        with self._lock:
            if self._readers is not None:
                self._readers.close()
            self._conn.close()

    def cancel(self) -> None:
        """Interrupt the statement running on the writing connection (see
        :meth:`SqlBackend.cancel`): it fails with "interrupted", an
        OperationalError, and an interrupted write rolls its transaction
        back; with nothing running it has no effect. Not under ``self._lock``,
        which the thread running the statement holds.

        SQLite (3.40 at least) does not interrupt a wait in its busy handler:
        a statement waiting on another connection's write lock gives up only
        at ``busy_timeout``. SQLite forbids interrupting a connection that is
        closing meanwhile: callers keep the store open until this returns
        (:class:`~decisiongraph.runtime.worker_stores.WorkerStores` does).
        """
        try:
            self._conn.interrupt()
        except Exception:  # closed meanwhile
            log.debug("could not interrupt the running statement", exc_info=True)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            self._cache.clear()  # any other write may move what it remembers
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            else:
                cur.execute("COMMIT")
                self._committed()
            finally:
                cur.close()

    def _committed(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.nudge()

    @contextmanager
    def _append_txn(self) -> Iterator[sqlite3.Cursor]:
        """A write transaction that trusts the cache unless another connection
        committed meanwhile (``PRAGMA data_version`` moves only for those)."""
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                self._cache.validate(self._data_version(cur))
                yield cur
            except BaseException:
                self._cache.rollback()
                cur.execute("ROLLBACK")
                raise
            else:
                cur.execute("COMMIT")
                self._cache.commit()
                self._committed()
            finally:
                cur.close()

    def expect_append(self) -> Arrival:
        return self._arrivals.arrive()

    @contextmanager
    def arriving(self, arrival: Arrival | None = None) -> Iterator[None]:
        if getattr(self._validating, "arrival", None) is not None:  # counted already
            yield
            return
        self._validating.arrival = arrival if arrival is not None else self._arrivals.arrive()
        try:
            yield
        finally:
            self._arrived()

    def _arrived(self) -> None:
        arrival = getattr(self._validating, "arrival", None)
        if arrival is not None:
            self._validating.arrival = None
            arrival.settle()

    def _commit_append(
        self, tenant_id: str, items: Sequence[ValidatedEvent], recorded_at: str, project: bool
    ) -> tuple[AppendPlan, bool]:
        """Queue the append; whoever holds the connection next writes the queue,
        once the appends still being validated have joined it."""
        request = QueuedAppend(tenant_id, items, recorded_at, project)
        self._queue.append(request)
        self._arrived()
        with self._lock:
            while not request.done:
                self._arrivals.wait_until_queued()
                self._write_queued()
        return request.outcome()

    def _write_queued(self) -> None:
        """One transaction for the queued appends, a savepoint each (an
        append queued alone needs none: its failure undoes the transaction)."""
        group = take_group(self._queue)
        try:
            if len(group) == 1:
                alone = group[0]
                try:
                    alone.result = super()._commit_append(
                        alone.tenant_id, alone.items, alone.recorded_at, alone.project
                    )
                except Exception as exc:
                    alone.error = self._explained(alone, exc)
                return
            with self._append_txn() as cur:
                for request in group:
                    self._append_saved(cur, request)
        except BaseException as exc:  # nothing of the group was committed
            failure = (
                exc if isinstance(exc, Exception) else StorageError("The append was interrupted")
            )
            for request in group:
                request.result = None
                request.error = request.error or failure
            if not isinstance(exc, Exception):
                raise
        finally:
            for request in group:
                request.done = True

    def _append_saved(self, cur: sqlite3.Cursor, request: QueuedAppend) -> None:
        """One append of a group; its failure undoes only its own writes."""
        args = (cur, request.tenant_id, request.items, request.recorded_at, request.project)
        mark = self._cache.mark()
        cur.execute("SAVEPOINT dg_append")
        try:
            try:
                request.result = self._append_in(*args, probe=False)
            except KeyTaken:
                self._roll_back_to(cur, mark)
                request.result = self._append_in(*args, probe=True)
        except Exception as exc:
            self._roll_back_to(cur, mark)
            request.error = self._explained(request, exc)
        cur.execute("RELEASE dg_append")

    def _explained(self, request: QueuedAppend, exc: Exception) -> Exception:
        """The append's domain error, explained while the connection is still
        held: later appends of the queue may store what it names."""
        translated = self._append_error(request.tenant_id, request.items, exc)
        if translated is None:
            return exc
        translated.__cause__ = exc
        return translated

    def _roll_back_to(self, cur: sqlite3.Cursor, mark: int) -> None:
        cur.execute("ROLLBACK TO dg_append")
        self._cache.rollback_to(mark)

    def _data_version(self, cur: sqlite3.Cursor) -> int:
        """What moves when another connection commits (never, for a private
        in-memory database, which no other connection can open)."""
        if self._private:
            return 0
        return int(cur.execute("PRAGMA data_version").fetchone()[0])

    def _stage_append(
        self, tenant_id: str, plan: AppendPlan, heads: Mapping[str, TraceHead], projected: bool
    ) -> None:
        if plan.rows:
            self._cache.stage(
                tenant_id, plan.last_log_seq, plan.last_chain_hash, dict(heads), projected
            )

    def _projections_current(self, tenant_id: str, log_seq: int) -> bool:
        return self._cache.projections_current(tenant_id, log_seq)

    def _cached_trace_head(self, tenant_id: str, trace_id: str) -> TraceHead | None:
        """The trace's last event if this connection's own appends know it."""
        with self._lock:
            if not self._private:
                cur = self._conn.cursor()
                try:
                    self._cache.validate(self._data_version(cur))
                finally:
                    cur.close()
            return self._cache.trace_head(tenant_id, trace_id)

    def get_next_trace_seq(self, tenant_id: str, trace_id: str) -> int:
        head = self._cached_trace_head(tenant_id, trace_id)
        if head is None:
            return super().get_next_trace_seq(tenant_id, trace_id)
        return head[0] + 1

    def is_trace_finished(self, tenant_id: str, trace_id: str) -> bool:
        head = self._cached_trace_head(tenant_id, trace_id)
        if head is None:
            return super().is_trace_finished(tenant_id, trace_id)
        return head[1] == TRACE_FINISHED

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Cursor]:
        """A cursor on the writing connection when it is free or this thread
        holds it (a read inside a write sees that write); while another
        thread writes, on a read-only connection (WAL files only), so that
        reads never queue behind commits."""
        if self._readers is None:
            self._lock.acquire()
        elif not self._lock.acquire(blocking=False):
            with self._readers.cursor() as cur:
                yield cur
            return
        try:
            cur = self._conn.cursor()
            try:
                yield cur
            finally:
                cur.close()
        finally:
            self._lock.release()

    @contextmanager
    def _bulk_writes(self) -> Iterator[None]:
        """A larger page cache while a long catch-up runs (see BULK_CACHE_KIB)."""
        with self._lock:
            self._bulk_depth += 1
            if self._bulk_depth == 1:
                self._conn.execute(f"PRAGMA cache_size = -{BULK_CACHE_KIB}")
        try:
            yield
        finally:
            with self._lock:
                self._bulk_depth -= 1
                if self._bulk_depth == 0:
                    self._conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")

    @contextmanager
    def _reader(self) -> Iterator[Callable[[], AbstractContextManager[sqlite3.Cursor]] | None]:
        """Read-only cursors on a second connection, in WAL mode only (where a
        reader never blocks the writer's commit); each is closed after use so
        that no read snapshot outlives its batch."""
        if not self._wal:
            yield None
            return
        try:
            conn = open_read_only(self._path)
        except sqlite3.Error:  # no second connection to be had: no read-ahead
            yield None
            return

        @contextmanager
        def cursor() -> Iterator[sqlite3.Cursor]:
            cur = conn.cursor()
            try:
                yield cur
            finally:
                cur.close()

        try:
            yield cursor
        finally:
            conn.close()

    @contextmanager
    def _savepoint(self, cur: sqlite3.Cursor) -> Iterator[None]:
        cur.execute("SAVEPOINT dg_project")
        try:
            yield
        except BaseException:
            cur.execute("ROLLBACK TO dg_project")
            cur.execute("RELEASE dg_project")
            raise
        cur.execute("RELEASE dg_project")

    def _lock_log_head(self, cur: sqlite3.Cursor, tenant_id: str) -> tuple[int, str]:
        cached = self._cache.log_head(tenant_id)
        if cached is not None:
            return cached
        row = cur.execute(
            "SELECT last_log_seq, chain_hash FROM dg_log_head WHERE tenant_id = ?", (tenant_id,)
        ).fetchone()
        if row is None:
            cur.execute(
                "INSERT INTO dg_log_head (tenant_id, last_log_seq, chain_hash) VALUES (?, 0, ?)",
                (tenant_id, GENESIS_CHAIN_HASH),
            )
            return (0, GENESIS_CHAIN_HASH)
        head = (int(row[0]), str(row[1]))
        self._cache.note_log_head(tenant_id, head)
        return head

    def _trace_heads(
        self, cur: sqlite3.Cursor, tenant_id: str, trace_ids: Sequence[str]
    ) -> dict[str, TraceHead]:
        heads: dict[str, TraceHead] = {}
        missing = []
        for trace_id in trace_ids:
            cached = self._cache.trace_head(tenant_id, trace_id)
            if cached is None:
                missing.append(trace_id)
            else:
                heads[trace_id] = cached
        trace_ids = missing
        if not trace_ids:
            return heads
        if len(trace_ids) == 1:
            row = cur.execute(
                "SELECT trace_seq, event_type FROM dg_event_log WHERE tenant_id = ? "
                "AND trace_id = ? ORDER BY trace_seq DESC LIMIT 1",
                (tenant_id, trace_ids[0]),
            ).fetchone()
            if row is not None:
                heads[trace_ids[0]] = (int(row[0]), str(row[1]))
            return heads
        for chunk in chunks(list(trace_ids)):
            marks = ", ".join("?" for _ in chunk)
            # SQLite returns the bare columns of the row holding the MAX().
            rows = cur.execute(
                "SELECT trace_id, MAX(trace_seq), event_type FROM dg_event_log "
                f"WHERE tenant_id = ? AND trace_id IN ({marks}) GROUP BY trace_id",
                [tenant_id, *chunk],
            ).fetchall()
            heads.update({row[0]: (int(row[1]), str(row[2])) for row in rows})
        return heads

    # -- the log's digest keys (see log_keys): the text decides -----------------
    def _append_in(
        self,
        cur: sqlite3.Cursor,
        tenant_id: str,
        items: Sequence[ValidatedEvent],
        recorded_at: str,
        project: bool,
        *,
        probe: bool,
        guarded: bool = True,
    ) -> tuple[AppendPlan, bool]:
        # What the exact path notes of its digests lives for that one append:
        # a note left by one that failed could outlive the rows it was about.
        self._digests.start(tenant_id if probe else None)
        try:
            return super()._append_in(
                cur, tenant_id, items, recorded_at, project, probe=probe, guarded=guarded
            )
        finally:
            self._digests.start(None)

    def _key_taken(self, exc: Exception) -> bool:
        """A unique digest was taken: by a retry, a reused id, or a
        collision; the exact path tells them apart."""
        if isinstance(exc, sqlite3.IntegrityError) and any(
            column in str(exc) for column in ("event_key", "idem_key")
        ):
            return True
        return super()._key_taken(exc)

    def _find_existing(
        self, cur: sqlite3.Cursor, tenant_id: str, keys: Sequence[IdemKey]
    ) -> dict[IdemKey, StoredEvent]:
        """The exact path's first look (see log_keys): events stored under
        the batch's keys; digests other texts hold are noted, for NULL."""
        wanted = {key: self._digests.key(tenant_id, *key) for key in dict.fromkeys(keys)}
        found: dict[IdemKey, StoredEvent] = {}
        sharing: dict[int, list[IdemKey]] = {}  # digest -> the wanted keys with it
        for key, digest in wanted.items():
            if digest is not None:
                sharing.setdefault(digest, []).append(key)
        held: list[IdemKey] = []
        for row in self._digest_rows(cur, "idem_key", list(sharing), tenant_id):
            event = event_from_row(row[:-1])
            stored = (event.source.producer_id, event.idempotency_key)
            mine = event.tenant_id == tenant_id
            if mine and stored in wanted:
                found[stored] = event
            # One row holds a digest: any other wanted key with it gets NULL.
            held.extend(key for key in sharing.get(row[-1], ()) if not (mine and key == stored))
        self._digests.held_elsewhere((), held)
        return found

    def _check_new_ids(
        self,
        cur: sqlite3.Cursor,
        tenant_id: str,
        items: Sequence[ValidatedEvent],
        plan: AppendPlan,
    ) -> None:
        """Under the write lock: no planned event may reuse a stored id or an
        earlier one of its batch; a digest another id holds is noted."""
        new = [
            (index, item.envelope.event_id)
            for index, (item, result) in enumerate(zip(items, plan.results, strict=True))
            if not result.repeated
        ]
        if not new:
            return
        wanted = {event_id: self._digests.event(tenant_id, event_id) for _, event_id in new}
        digests = [digest for digest in set(wanted.values()) if digest is not None]
        stored: set[str] = set()
        held: set[int] = set()
        select = "SELECT tenant_id, event_id, event_key FROM dg_event_log"
        for row_tenant, event_id, digest in self._digest_rows(
            cur, "event_key", digests, tenant_id, select
        ):
            if row_tenant == tenant_id and event_id in wanted:
                stored.add(event_id)
            elif digest is not None:
                held.add(digest)
        seen: set[str] = set()
        for index, event_id in new:
            if event_id in stored or event_id in seen:
                raise duplicate_event_id(index, event_id)
            seen.add(event_id)
        taken = (event_id for event_id, digest in wanted.items() if digest in held)
        self._digests.held_elsewhere(taken, ())

    def _digest_rows(
        self,
        cur: sqlite3.Cursor,
        column: str,
        digests: Sequence[int],
        tenant_id: str,
        select: str = f"SELECT {', '.join(EVENT_COLUMNS)}, idem_key FROM dg_event_log",
    ) -> Iterator[Sequence[Any]]:
        """Rows holding any of ``digests`` in ``column`` (every tenant's: a
        digest is unique across tenants), then the tenant's rows whose
        digest is NULL. The index is named: given ``tenant_id = ?``, the
        planner would prefer a wider one."""
        index = f"idx_event_log_{column}"
        for chunk in chunks(digests):
            marks = ", ".join("?" for _ in chunk)
            yield from cur.execute(
                f"{select} INDEXED BY {index} WHERE {column} IN ({marks})", list(chunk)
            ).fetchall()
        yield from cur.execute(
            f"{select} INDEXED BY {index} WHERE {column} IS NULL AND tenant_id = ?",
            (tenant_id,),
        ).fetchall()

    def _event_id_stored(self, cur: sqlite3.Cursor, tenant_id: str, event_id: str) -> bool:
        select = "SELECT 1 FROM dg_event_log INDEXED BY idx_event_log_event_key WHERE "
        row = cur.execute(
            f"{select} event_key = ? AND tenant_id = ? AND event_id = ? "
            f"UNION ALL {select} event_key IS NULL AND tenant_id = ? AND event_id = ?",
            (log_keys.event_digest(tenant_id, event_id), tenant_id, event_id, tenant_id, event_id),
        ).fetchone()
        return row is not None

    def verify_chain(self, tenant_id: str) -> ChainProblem | None:
        """The hash chain, then the digests (which it does not cover): a
        digest edited behind the store's back would let a retry, or an
        event reusing an id, be stored a second time."""
        problem = super().verify_chain(tenant_id)
        if problem is not None or not self._has_digests():
            return problem
        sql = (
            "SELECT log_seq, event_id, producer_id, idempotency_key, event_key, idem_key "
            "FROM dg_event_log WHERE tenant_id = ? ORDER BY log_seq"
        )
        for log_seq, event_id, producer_id, key, *stored in self._stream(sql, (tenant_id,)):
            expected = (
                log_keys.event_digest(tenant_id, event_id),
                log_keys.idem_digest(tenant_id, producer_id, key),
            )
            for column, digest, wanted in zip(
                ("event_key", "idem_key"), stored, expected, strict=True
            ):
                if digest is None and not self._digest_held(column, wanted):
                    return ChainProblem(
                        tenant_id, log_seq, f"{column} is missing and no other row holds it"
                    )
                if digest is not None and digest != wanted:
                    return ChainProblem(
                        tenant_id, log_seq, f"{column} does not match the row (edited)"
                    )
        return None

    def _has_digests(self) -> bool:
        """False for a database from before the digests (migration 0010)
        opened read-only, which cannot be upgraded: an auditor's copy."""
        with self._read() as cur:
            columns = {row[1] for row in cur.execute("PRAGMA table_info(dg_event_log)")}
        return {"event_key", "idem_key"} <= columns

    def _digest_held(self, column: str, digest: int) -> bool:
        """Whether a row holds ``digest``, as one must for a row without it."""
        with self._read() as cur:
            row = cur.execute(
                f"SELECT 1 FROM dg_event_log INDEXED BY idx_event_log_{column} WHERE {column} = ?",
                (digest,),
            ).fetchone()
        return row is not None

    def _insert_events(self, cur: sqlite3.Cursor, rows: Sequence[Row]) -> None:
        keyed = self._digests.keyed(rows)
        if len(keyed) == 1:
            cur.execute(_INSERT, keyed[0])
        else:
            cur.executemany(_INSERT, keyed)

    def _stream(self, sql: str, params: Sequence[Any]) -> Iterator[Sequence[Any]]:
        """Rows produced lazily: on a side connection (WAL files), one
        snapshot however long the caller takes; else on a dedicated cursor
        of the writing connection, taken a chunk at a time.

        A statement left open on the writing connection between chunks
        would hold a read transaction there, and SQLite then answers another
        thread's ``BEGIN IMMEDIATE`` with SQLITE_BUSY at once, without its
        busy timeout, whenever a second connection (a rebuild's heartbeat, a
        CLI command) is writing.
        """
        if self._readers is not None and not self._lock.held_by_me():
            with self._readers.cursor() as side:
                side.execute(sql, params)
                while rows := side.fetchmany(2000):
                    yield from rows
            return
        with self._lock:
            cur = self._conn.cursor()
            cur.execute(sql, params)
        try:
            while True:
                with self._lock:
                    rows = cur.fetchmany(2000)
                if not rows:
                    return
                yield from rows
        finally:
            cur.close()

    @contextmanager
    def _snapshot(self) -> Iterator[Streamer]:
        """One read transaction: on a side connection for WAL files (writers
        go on meanwhile); otherwise on the writing connection, held for the
        duration (nobody else can write to a private database anyway)."""
        if self._readers is not None and not self._lock.held_by_me():
            with self._readers.cursor() as side:  # begun: one snapshot
                yield partial(_stream_on, side.connection)
            return
        with self._lock:
            began = not self._conn.in_transaction
            if began:
                self._conn.execute("BEGIN")
            try:
                yield partial(_stream_on, self._conn)
            finally:
                if began:
                    self._conn.execute("ROLLBACK")  # read only: nothing to keep

    def _translate_error(self, exc: Exception) -> DecisionGraphError | None:
        return translate_sqlite_error(exc)

    def drop_append_indexes(self) -> None:
        """Drop the log indexes only appends and event lookups use.

        For a replay replica, which is filled by :meth:`load_raw_rows` and
        then only read by position and by trace: loading it is a third
        faster without them. Never call this on a store that takes appends.
        """
        with self._write() as cur:
            for index in (
                "idx_event_log_event_key",
                "idx_event_log_idem_key",
                "idx_event_log_event_type",
            ):
                cur.execute(f"DROP INDEX IF EXISTS {index}")

    def load_raw_rows(self, tenant_id: str, rows: Iterable[Sequence[Any]]) -> int:
        """Copy stored rows verbatim (a replica for replay and comparison).

        Rows come from another store's ``iter_raw_rows``: already validated
        and chained there, so they are inserted as they are, without the
        digests only appends look up (see :meth:`drop_append_indexes`).
        """
        count = 0
        last: Sequence[Any] | None = None
        batch: list[Sequence[Any]] = []
        with self._write() as cur:
            self._lock_log_head(cur, tenant_id)
            for row in rows:
                batch.append(row)
                last = row
                if len(batch) >= 5000:
                    cur.executemany(_INSERT, [(*row, None, None) for row in batch])
                    count += len(batch)
                    batch.clear()
            if batch:
                cur.executemany(_INSERT, [(*row, None, None) for row in batch])
                count += len(batch)
            if last is not None:
                cur.execute(
                    "UPDATE dg_log_head SET last_log_seq = ?, chain_hash = ? WHERE tenant_id = ?",
                    (last[1], last[-1], tenant_id),
                )
        return count


def _stream_on(
    conn: sqlite3.Connection, sql: str, params: Sequence[Any]
) -> Iterator[Sequence[Any]]:
    """A query's rows a chunk at a time, on a cursor of its own."""
    cur = conn.cursor()
    try:
        cur.execute(sql, params)
        while rows := cur.fetchmany(2000):
            yield from rows
    finally:
        cur.close()


def _split_statements(sql: str) -> list[str]:
    """Split a migration into statements, keeping trigger bodies whole."""
    statements: list[str] = []
    buffer = ""
    for line in sql.splitlines(keepends=True):
        if line.strip().startswith("--") and not buffer.strip():
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements
