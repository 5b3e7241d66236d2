"""The database's passing trouble is not the event's fault.

A lock timeout (PostgreSQL, a table held by another session) or "database is
locked" (SQLite, another connection holding the write lock) is retried with
capped backoff for as long as it lasts, shows as the projection's last
error, and never dead-letters the event; once the lock goes, the worker
catches up and the digests equal a rebuild.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable

import psycopg
import pytest
from psycopg import errors as pg_errors

from decisiongraph.core.errors import StorageError
from decisiongraph.projections.rows import TRACE_SUMMARY
from decisiongraph.runtime.backoff import Backoff
from decisiongraph.runtime.health import projection_statuses
from decisiongraph.runtime.rebuild import compare_with_rebuild, replay_digests
from decisiongraph.runtime.worker import ProjectionWorker
from decisiongraph.store.postgres import PostgresEventStore
from decisiongraph.store.sql_base import SqlEventStore
from decisiongraph.store.sqlite import SQLiteEventStore
from decisiongraph.store.transient import is_transient
from tests.runtime.support import T, seeded

P = TRACE_SUMMARY
TINY = Backoff(base=0.001, cap=0.005)
MAX_ATTEMPTS = 3


def worker_for(store: SqlEventStore) -> ProjectionWorker:
    return ProjectionWorker(
        store,
        T,
        P,
        "test-owner",
        batch_size=10,
        max_attempts=MAX_ATTEMPTS,
        backoff=TINY,
        outage_backoff=TINY,
    )


def step_until(worker: ProjectionWorker, done: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "the worker did not get there in time"
        worker.step()
        time.sleep(0.002)


def last_error(store: SqlEventStore) -> str | None:
    return {s.projection: s for s in projection_statuses(store, T)}[P].last_error


def ride_out_and_recover(
    store: SqlEventStore,
    worker: ProjectionWorker,
    release: Callable[[], None],
    caplog: pytest.LogCaptureFixture,
    while_locked: Callable[[str | None], None] = lambda recorded: None,
) -> str:
    """Step many times max_attempts while the lock is held, then release it;
    returns the outage's error. ``while_locked`` sees the last error health
    showed meanwhile."""
    before = store.projection_cursor(T, P)
    with caplog.at_level(logging.WARNING, logger="decisiongraph.runtime.worker"):
        step_until(
            worker,
            lambda: worker.outage is not None and worker.outage.attempts >= 4 * MAX_ATTEMPTS,
        )
    assert store.dead_letters(T) == []
    assert not worker.parked
    assert store.projection_cursor(T, P) == before
    outage = worker.outage
    assert outage is not None
    while_locked(last_error(store))
    # Logged at attempts 1, 2, 4 and 8: a long outage does not flood the log.
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 4 and all("not the event" in w and P in w for w in warnings)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]

    release()
    head = store.get_last_log_seq(T)
    step_until(worker, lambda: store.projection_cursor(T, P) == head)
    assert worker.outage is None
    assert store.dead_letters(T) == []
    assert last_error(store) is None
    assert store.digests(T).trace_summary == replay_digests(store, T).trace_summary
    store.project_pending(T)
    assert compare_with_rebuild(store, T).match
    return outage.error


def test_a_lock_timeout_is_waited_out_not_dead_lettered_postgres(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Only the worker's connection gives up on locks quickly.
    store = PostgresEventStore(pg_url + "?options=-c%20lock_timeout%3D50")
    store.append(T, seeded(20, seed=61))
    locker = psycopg.connect(pg_url)

    def shown_in_health(recorded: str | None) -> None:
        assert recorded is not None and recorded.startswith("DG_ERR_STORAGE")
        assert "lock timeout" in recorded

    try:
        locker.execute("LOCK TABLE dg_trace_summary IN ACCESS EXCLUSIVE MODE")
        worker = worker_for(store)
        error = ride_out_and_recover(store, worker, locker.rollback, caplog, shown_in_health)
        assert "lock timeout" in error
    finally:
        locker.close()
        store.close()


def test_database_is_locked_is_waited_out_not_dead_lettered_sqlite(
    sqlite_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = SQLiteEventStore(sqlite_path, busy_timeout=0.02)
    store.append(T, seeded(20, seed=61))
    locker = sqlite3.connect(sqlite_path, isolation_level=None)  # explicit BEGIN below
    try:
        worker = worker_for(store)
        assert worker.step() == 10  # the lease is taken and a first batch applied
        # Another process's write lock: no batch (nor the last error) can be
        # written until it goes.
        locker.execute("BEGIN IMMEDIATE")
        error = ride_out_and_recover(store, worker, lambda: locker.rollback(), caplog)
        assert error.startswith("DG_ERR_STORAGE") and "database is locked" in error
    finally:
        locker.close()
        store.close()


def test_transient_classification_follows_the_driver_error_type() -> None:
    def translated(cause: BaseException) -> StorageError:
        try:
            raise StorageError(f"wrapped: {cause}") from cause
        except StorageError as exc:
            return exc

    for passing in (
        pg_errors.LockNotAvailable("lock timeout"),
        pg_errors.QueryCanceled("statement timeout"),
        pg_errors.SerializationFailure("could not serialize"),
        pg_errors.DeadlockDetected("deadlock"),
        psycopg.OperationalError("the connection is closed"),
        sqlite3.OperationalError("database is locked"),
    ):
        assert is_transient(passing) and is_transient(translated(passing)), passing
    for events_fault in (
        ValueError("a fold bug"),
        StorageError("corrupt stored JSON"),  # no driver error behind it
        pg_errors.UniqueViolation("duplicate key"),
        pg_errors.ProgramLimitExceeded("index row too large"),  # the data's size
        sqlite3.IntegrityError("UNIQUE constraint failed"),
    ):
        assert not is_transient(events_fault) and not is_transient(translated(events_fault))
