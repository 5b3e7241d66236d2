"""Supervision: crashing workers are restarted with backoff, the supervisor
outlives them; backoff bounds; SIGTERM drains a worker process cleanly."""

from __future__ import annotations

import random
import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

from decisiongraph.projections.rows import PROJECTION_NAMES, TRACE_SUMMARY
from decisiongraph.runtime.backoff import Backoff
from decisiongraph.runtime.health import projection_statuses
from decisiongraph.runtime.rebuild import compare_with_rebuild
from decisiongraph.runtime.supervisor import Supervisor, SupervisorConfig
from decisiongraph.store.postgres import PostgresEventStore
from decisiongraph.store.sql_base import SqlEventStore
from decisiongraph.store.sqlite import SQLiteEventStore
from tests.runtime.support import (
    T,
    WorkerProcess,
    assert_exactly_once,
    caught_up,
    open_sql,
    progress,
    seeded,
    stays_false,
    trace_boundary,
    wait_until,
)


class Outage:
    """A thread-safe countdown of failures to inject."""

    def __init__(self, failures: int) -> None:
        self.left = failures
        self._lock = threading.Lock()

    def hit(self) -> bool:
        with self._lock:
            if self.left <= 0:
                return False
            self.left -= 1
            return True


def flaky_store(path: str, outage: Outage, projection: str) -> SQLiteEventStore:
    """A real SQLite store on which ``projection``'s worker crashes a few times.

    The crash comes from the lease, outside any event: a failure while
    applying events is the event's (retried, then dead-lettered), not a crash.
    """

    class FlakyStore(SQLiteEventStore):
        def acquire_lease(self, tenant_id: str, name: str, owner: str, ttl: float) -> bool:
            if name == projection and outage.hit():
                raise RuntimeError("lease bookkeeping bug")
            return super().acquire_lease(tenant_id, name, owner, ttl)

    return FlakyStore(path)


RESTART = Backoff(base=0.1, cap=1.0)


def test_a_crashing_worker_is_restarted_with_backoff_and_catches_up(sqlite_path: str) -> None:
    events = seeded(40, seed=35)
    split = trace_boundary(events, 30)
    probe = open_sql(sqlite_path)
    probe.append(T, events[:split])
    outage = Outage(3)
    started = time.monotonic()
    supervisor = Supervisor(
        lambda: flaky_store(sqlite_path, outage, TRACE_SUMMARY),
        SupervisorConfig(tenants=[T], poll_interval=0.05, restart_backoff=RESTART),
    ).start()
    try:
        wait_until(lambda: caught_up(probe, T), 20, "catch-up after restarts")
        elapsed = time.monotonic() - started
        assert outage.left == 0
        assert supervisor.restarts == 3
        # Three restarts of one worker waited >= 0.05 + 0.1 + 0.2 s (jittered backoff).
        assert elapsed >= 0.35
        # The supervisor outlived the crashes: new events are still picked up.
        probe.append(T, events[split:])
        wait_until(lambda: caught_up(probe, T), 20, "catch-up of new events")
        assert probe.get_last_log_seq(T) == len(events)
        assert supervisor.restarts == 3
        assert not supervisor.stopping
    finally:
        supervisor.stop()
    assert compare_with_rebuild(probe, T).match
    assert {s.status for s in projection_statuses(probe, T)} == {"healthy"}
    probe.close()


def test_a_recovered_worker_clears_its_crash_error(sqlite_path: str) -> None:
    probe = open_sql(sqlite_path)
    probe.append(T, seeded(10, seed=35))
    outage = Outage(2)
    supervisor = Supervisor(
        lambda: flaky_store(sqlite_path, outage, TRACE_SUMMARY),
        SupervisorConfig(tenants=[T], poll_interval=0.05, restart_backoff=RESTART),
    ).start()
    try:
        wait_until(lambda: caught_up(probe, T), 20, "catch-up after restarts")
        assert supervisor.restarts == 2
    finally:
        supervisor.stop()
    status = {s.projection: s for s in projection_statuses(probe, T)}[TRACE_SUMMARY]
    assert status.status == "healthy"
    # A transient projection error is cleared once the event applies
    # (ProjectionWorker._succeeded); a crash error should be too.
    assert status.last_error is None, status.last_error
    probe.close()


class LetterOutageStore(SQLiteEventStore):
    """Reading dead letters crashes while ``outage`` lasts (a lost connection)."""

    outage = Outage(0)

    def dead_letters(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if kwargs.get("projection") is not None and type(self).outage.hit():
            raise RuntimeError("database went away")
        return super().dead_letters(*args, **kwargs)


def test_a_crash_while_parked_keeps_the_failed_projection_s_error(sqlite_path: str) -> None:
    probe = open_sql(sqlite_path)
    probe.append(T, seeded(20, seed=21))
    with sqlite3.connect(sqlite_path) as raw:  # a poison event at log_seq 37
        raw.execute("DROP TRIGGER dg_event_log_no_update")
        raw.execute(
            "UPDATE dg_event_log SET payload_json = '{\"tampered\":true}' WHERE log_seq = 37"
        )
    LetterOutageStore.outage = Outage(0)
    supervisor = Supervisor(
        lambda: LetterOutageStore(sqlite_path),
        SupervisorConfig(
            tenants=[T],
            projections=[TRACE_SUMMARY],
            poll_interval=0.05,
            max_attempts=2,
            restart_backoff=RESTART,
        ),
    ).start()
    try:
        wait_until(lambda: probe.dead_letters(T, status="open") != [], 20, "the dead letter")
        LetterOutageStore.outage = Outage(2)  # two crashes while parked
        wait_until(lambda: supervisor.restarts == 2, 20, "two restarts")

        def parked_again() -> bool:
            worker = supervisor.workers().get((T, TRACE_SUMMARY))
            return worker is not None and worker.parked and worker.owns_lease

        wait_until(parked_again, 20, "the restarted worker to park at the dead letter")
        status = {s.projection: s for s in projection_statuses(probe, T)}[TRACE_SUMMARY]
        assert stays_false(lambda: status_error(probe) is None, 0.5), "last_error was cleared"
    finally:
        supervisor.stop()
    assert status.status == "failed" and status.cursor == 36
    probe.close()


def status_error(store: SqlEventStore) -> str | None:
    return {s.projection: s for s in projection_statuses(store, T)}[TRACE_SUMMARY].last_error


def test_a_store_factory_that_fails_is_retried(sqlite_path: str) -> None:
    probe = open_sql(sqlite_path)
    probe.append(T, seeded(20, seed=41))
    calls = {"n": 0}
    lock = threading.Lock()

    def factory() -> SqlEventStore:
        with lock:
            calls["n"] += 1
            n = calls["n"]
        if 2 <= n <= 5:  # the first call is the supervisor's own probe store
            raise ConnectionError("database unreachable")
        return SQLiteEventStore(sqlite_path)

    supervisor = Supervisor(
        factory, SupervisorConfig(tenants=[T], poll_interval=0.05, restart_backoff=RESTART)
    ).start()
    try:
        wait_until(lambda: caught_up(probe, T), 20, "catch-up", lambda: progress(probe, T))
        # Each restart may spend a failed call on its step and one on noting
        # the crash; the workers then share the pool's stores.
        assert 2 <= supervisor.restarts <= 4
        assert calls["n"] <= 1 + 4 + SupervisorConfig().connections
        assert set(supervisor.workers()) == {(T, name) for name in PROJECTION_NAMES}
    finally:
        supervisor.stop()
    assert compare_with_rebuild(probe, T).match
    assert probe.leases(T) == {}  # stop released every lease
    probe.close()


def test_backoff_grows_exponentially_within_its_jitter_bounds() -> None:
    backoff = Backoff(base=0.1, cap=5.0)
    rng = random.Random(7)
    delays = [backoff.delay(attempt, rng) for attempt in range(1, 13)]
    for attempt, delay in enumerate(delays, start=1):
        ceiling = min(5.0, 0.1 * 2 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling, (attempt, delay)
    # Below the cap, two attempts on the delay at least doubles, jitter or not.
    for attempt in range(1, 5):
        assert delays[attempt + 1] >= 2 * delays[attempt - 1]
    assert all(2.5 <= delay <= 5.0 for delay in delays[7:])  # capped from attempt 8 on
    assert len({round(d, 9) for d in delays}) == len(delays)  # jittered
    again = random.Random(7)
    assert delays == [backoff.delay(a, again) for a in range(1, 13)]  # seeded: reproducible
    # Attempt 0 (or below) is treated as the first one.
    assert 0.05 <= backoff.delay(0, random.Random(1)) <= 0.1


def test_sigterm_drains_the_in_flight_batch_and_releases_leases(
    pg_url: str, tmp_path: Path
) -> None:
    store = open_sql(pg_url)
    store.append(T, seeded(70, seed=13))  # about 700 events
    head = store.get_last_log_seq(T)
    batch = 20
    args = ("--batch-size", str(batch), "--lease-ttl", "10", "--poll-interval", "0.1")
    worker = WorkerProcess(pg_url, tmp_path, *args)
    restarted: WorkerProcess | None = None
    try:
        wait_until(lambda: store.projection_cursor(T) > 0, 30, "the worker to apply", worker.log)
        assert set(store.leases(T)) == set(PROJECTION_NAMES)
        worker.signal(signal.SIGTERM)
        assert worker.wait(15) == 0, worker.log()
        assert "draining" in worker.log()
        # Released on the way out (a 10 s lease would otherwise still be live).
        assert store.leases(T) == {}
        cursors = store.projection_cursors(T)
        # It stopped taking batches: far from done when the signal came.
        assert min(cursors.values()) < head
        for name, cursor in cursors.items():
            assert cursor == head or cursor % batch == 0, (name, cursor)  # whole batches
        comparison = compare_with_rebuild(store, T)
        assert comparison.match, comparison.first_difference
        restarted = WorkerProcess(pg_url, tmp_path, "--batch-size", "500", "--poll-interval", "0.1")
        wait_until(lambda: caught_up(store, T), 30, "catch-up after restart", restarted.log)
    finally:
        worker.kill()
        if restarted is not None:
            restarted.kill()
    assert_exactly_once(store, T)
    store.close()


def drop_connections(url: str) -> int:
    """Terminate every other session on the test database (a failover, a restart)."""
    with psycopg.connect(url, autocommit=True) as admin:
        row = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    return int(row[0]) if row else 0


def test_workers_survive_the_database_dropping_their_connections(pg_url: str) -> None:
    events = seeded(30, seed=43)
    split = trace_boundary(events, 20)
    writer = open_sql(pg_url)
    writer.append(T, events[:split])
    supervisor = Supervisor(
        lambda: PostgresEventStore(pg_url),
        SupervisorConfig(tenants=[T], poll_interval=0.1, restart_backoff=RESTART),
    ).start()
    try:
        wait_until(lambda: caught_up(writer, T), 20, "the first catch-up")
        writer.close()
        assert drop_connections(pg_url) >= len(PROJECTION_NAMES)
        writer = open_sql(pg_url)
        writer.append(T, events[split:])
        wait_until(
            lambda: caught_up(writer, T),
            20,
            "catch-up on new connections",
            lambda: progress(writer, T),
        )
        assert supervisor.restarts >= 1
        # A lost connection is not the event's fault: nothing was dead-lettered.
        assert writer.dead_letters(T) == []
        assert writer.get_last_log_seq(T) == len(events)
    finally:
        supervisor.stop()
    assert_exactly_once(writer, T)
    writer.close()


def test_tenant_discovery_survives_a_lost_connection(pg_url: str) -> None:
    writer = open_sql(pg_url)
    writer.append(T, seeded(5, seed=44))
    supervisor = Supervisor(
        lambda: PostgresEventStore(pg_url),
        SupervisorConfig(tenants=None, poll_interval=0.1, restart_backoff=RESTART),
    ).start()
    try:
        wait_until(lambda: caught_up(writer, T), 20, "the first catch-up")
        writer.close()
        drop_connections(pg_url)
        writer = open_sql(pg_url)
        writer.append("late-tenant", seeded(5, seed=45))
        # Discovery runs every max(poll_interval, 1 s).
        wait_until(
            lambda: caught_up(writer, "late-tenant"),
            4,
            "workers for a tenant that appeared after the connection loss",
            lambda: progress(writer, "late-tenant"),
        )
    finally:
        supervisor.stop()
        writer.close()
