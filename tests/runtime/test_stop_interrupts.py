"""A stop is one deadline, also for a worker stuck on a lock.

``Supervisor.stop`` gives in-flight batches a grace period, then cancels the
statements of the workers still stepping (``SqlEventStore.cancel``): a step
waiting on a lock held elsewhere (a rebuild's projection lock, a row lock)
would otherwise keep its worker, and its lease, past the deadline. The
cancelled batch rolls back, so the cursor stays where the last commit left
it, and a later worker applies every event exactly once.

SQLite's interrupt does not cut short a wait in its busy handler (SQLite
3.40), so the stuck-on-a-lock case is PostgreSQL's only; what SQLite's
``cancel`` does do (interrupt a running statement, nothing when idle) is
tested directly.
"""

from __future__ import annotations

import signal
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from decisiongraph.projections.rows import TRACE_SUMMARY
from decisiongraph.runtime.supervisor import Supervisor, SupervisorConfig
from decisiongraph.runtime.worker_stores import WorkerStores
from decisiongraph.store.postgres import PostgresEventStore, advisory_key
from decisiongraph.store.sql_base import SqlEventStore
from decisiongraph.store.sqlite import SQLiteEventStore
from decisiongraph.store.transient import is_transient
from tests.runtime.support import (
    T,
    WorkerProcess,
    assert_exactly_once,
    caught_up,
    open_sql,
    progress,
    seeded,
    wait_until,
)

#: Longer than any test here waits: a lease still there at the end was released.
LEASE_TTL = 120.0
#: The projected part of the log before the lock is taken.
COMMITTED = 40

ADVISORY_LOCKS_SQL = (
    "SELECT count(*) FILTER (WHERE granted), count(*) FILTER (WHERE NOT granted) "
    "FROM pg_locks WHERE locktype = 'advisory' "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


@pytest.fixture
def seeded_pg(pg_url: str) -> Iterator[SqlEventStore]:
    """A log of 30 traces, every projection applied up to ``COMMITTED``."""
    store = open_sql(pg_url)
    store.append(T, seeded(30, seed=44))
    assert store.get_last_log_seq(T) > 2 * COMMITTED
    store.project_pending(T, until_log_seq=COMMITTED)
    assert set(store.projection_cursors(T).values()) == {COMMITTED}
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def projection_lock(pg_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """Another session holding the trace summary's projection lock (as a
    long rebuild would), until the test rolls it back."""
    locker = psycopg.connect(pg_url)
    locker.execute(
        "SELECT pg_advisory_xact_lock(%s)", (advisory_key("projection", T, TRACE_SUMMARY),)
    )
    try:
        yield locker
    finally:
        locker.close()


def advisory_locks(pg_url: str) -> tuple[int, int]:
    """(held, waited for) advisory locks in the test's database."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        row = conn.execute(ADVISORY_LOCKS_SQL).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def lock_waiters(pg_url: str) -> int:
    return advisory_locks(pg_url)[1]


def worker_threads(projection: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"dg-{T}-{projection}"]


def test_stop_cancels_a_step_waiting_on_a_lock_and_releases_its_lease(
    pg_url: str,
    seeded_pg: SqlEventStore,
    projection_lock: psycopg.Connection[tuple[object, ...]],
) -> None:
    store = seeded_pg
    supervisor = Supervisor(
        lambda: PostgresEventStore(pg_url),
        SupervisorConfig(
            projections=[TRACE_SUMMARY], tenants=[T], poll_interval=0.05, lease_ttl=LEASE_TTL
        ),
    ).start()
    try:
        wait_until(lambda: lock_waiters(pg_url) == 1, 20, "the worker to wait on the lock")
        assert store.leases(T)[TRACE_SUMMARY].owner == supervisor.owner
    finally:
        # Without a cancel the worker would still wait on the lock (held on
        # below) when stop's deadline ends, its lease held for LEASE_TTL.
        supervisor.stop(timeout=8.0)
    assert not worker_threads(TRACE_SUMMARY), "the stuck worker outlived stop()"
    # The test's lock is held still: the wait was cancelled, not granted.
    assert advisory_locks(pg_url) == (1, 0)
    assert TRACE_SUMMARY not in store.leases(T)
    # The cancelled batch rolled back: the cursor is where the last commit left it.
    assert store.projection_cursor(T, TRACE_SUMMARY) == COMMITTED
    # A cancel on the way out is no crash, no outage and no event's fault.
    assert supervisor.restarts == 0
    state = store.projection_states(T).get(TRACE_SUMMARY)
    assert state is None or state.last_error is None, state
    assert store.dead_letters(T) == []

    projection_lock.rollback()
    again = Supervisor(
        lambda: PostgresEventStore(pg_url),
        SupervisorConfig(tenants=[T], poll_interval=0.05, lease_ttl=LEASE_TTL),
    ).start()
    try:
        wait_until(lambda: caught_up(store), 30, "catch-up after the lock", lambda: progress(store))
    finally:
        again.stop()
    assert store.leases(T) == {}
    assert_exactly_once(store)


def test_sigterm_exits_a_worker_process_stuck_on_a_lock_with_its_leases_released(
    pg_url: str,
    seeded_pg: SqlEventStore,
    projection_lock: psycopg.Connection[tuple[object, ...]],
    tmp_path: Path,
) -> None:
    store = seeded_pg
    others = [name for name in store.projection_cursors(T) if name != TRACE_SUMMARY]
    head = store.get_last_log_seq(T)
    worker = WorkerProcess(
        pg_url, tmp_path, "--tenant", T, "--lease-ttl", str(LEASE_TTL), "--poll-interval", "0.05"
    )
    try:
        wait_until(
            lambda: (
                lock_waiters(pg_url) == 1
                and all(store.projection_cursor(T, name) == head for name in others)
            ),
            30,
            "the other projections to catch up and the trace summary to wait on the lock",
            worker.log,
        )
        assert set(store.leases(T)) == {*others, TRACE_SUMMARY}
        worker.signal(signal.SIGTERM)
        # The lease time to live outlasts this wait: a process that left its
        # leases behind (at stop's 30 s deadline or on a crash) fails below.
        assert worker.wait(LEASE_TTL / 2) == 0, worker.log()
    finally:
        worker.kill()
    assert store.leases(T) == {}
    assert store.projection_cursor(T, TRACE_SUMMARY) == COMMITTED
    shown = worker.log_path.read_text("utf-8", errors="replace")
    for noise in ("restarting", "the database failed", "dead-lettered", "Traceback"):
        assert noise not in shown, shown
    projection_lock.rollback()
    store.project_pending(T)
    assert_exactly_once(store)


def test_cancel_on_an_idle_store_is_harmless(backend_url: str) -> None:
    store = open_sql(backend_url)
    try:
        store.cancel()
        store.cancel()
        store.append(T, seeded(3, seed=45))
        store.cancel()
        assert store.project_pending(T) == store.get_last_log_seq(T) > 0
        assert caught_up(store)
        store.cancel()
        assert store.acquire_lease(T, TRACE_SUMMARY, "me", LEASE_TTL)
        store.release_lease(T, TRACE_SUMMARY, "me")
        assert store.leases(T) == {}
    finally:
        store.close()
    store.cancel()  # closed: still no error


def test_sqlite_cancel_interrupts_a_running_statement(sqlite_path: str) -> None:
    store = SQLiteEventStore(sqlite_path)
    store.append(T, seeded(2, seed=46))
    running = threading.Event()
    errors: list[BaseException] = []

    def count_forever() -> None:
        store._conn.set_progress_handler(lambda: running.set() or 0, 1000)
        try:
            store._conn.execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
                "SELECT count(*) FROM n"
            ).fetchone()
        except BaseException as exc:
            errors.append(exc)
        finally:
            store._conn.set_progress_handler(None, 0)

    thread = threading.Thread(target=count_forever, daemon=True)
    thread.start()
    try:
        wait_until(running.is_set, 10, "the statement to run")
        store.cancel()
        thread.join(10)
        assert not thread.is_alive()
        (error,) = errors
        assert isinstance(error, sqlite3.OperationalError) and is_transient(error)
        assert store.get_last_log_seq(T) > 0  # the store is still usable
    finally:
        store.close()


class CountingStore(SQLiteEventStore):
    """Counts the cancels it receives."""

    cancels = 0

    def cancel(self) -> None:
        self.cancels += 1
        super().cancel()


def test_cancel_lent_reaches_lent_pooled_stores_only(sqlite_path: str) -> None:
    opened: list[CountingStore] = []

    def factory() -> SqlEventStore:
        opened.append(CountingStore(sqlite_path))
        return opened[-1]

    stores = WorkerStores(factory, 2, lambda store: None)
    try:
        with stores.borrow() as first:
            with stores.borrow(interruptible=False) as releasing:
                assert stores.cancel_lent() == 1
            assert stores.cancel_lent() == 1
        assert stores.cancel_lent() == 0  # returned: idle stores are not cancelled
        assert isinstance(first, CountingStore) and first.cancels == 2
        assert isinstance(releasing, CountingStore) and releasing.cancels == 0
        with pytest.raises(RuntimeError), stores.borrow() as failed:
            raise RuntimeError("a step failed")
        assert stores.cancel_lent() == 0  # the failed store was closed, not kept
        assert isinstance(failed, CountingStore)
    finally:
        stores.close()

    shared = CountingStore(sqlite_path)
    try:
        embedded = WorkerStores(factory, 2, lambda store: None, shared=shared)
        with embedded.borrow() as lent:
            assert lent is shared
            # Its one connection also serves the process's appends: never cancelled.
            assert embedded.cancel_lent() == 0
        assert shared.cancels == 0
    finally:
        shared.close()
