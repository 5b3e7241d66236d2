"""kill -9 of a worker process in the middle of a batch, under load, then a
new worker: nothing lost, nothing applied twice (PostgreSQL)."""

from __future__ import annotations

import signal
from pathlib import Path

import psycopg

from decisiongraph.runtime.health import projection_statuses
from tests.runtime.support import (
    T,
    WorkerProcess,
    Writer,
    assert_exactly_once,
    caught_up,
    open_sql,
    owner_pid,
    progress,
    seeded,
    wait_until,
)

TTL = 1.5
WORKER = ("--batch-size", "25", "--lease-ttl", str(TTL), "--poll-interval", "0.1")
PROJECTION_TABLES = "dg_cg_nodes, dg_cg_edges, dg_trace_summary, dg_precedent_index"
# A worker backend inside a projection batch (it holds the projection's
# advisory lock) that is waiting for a table lock: its batch has begun
# and has not committed.
IN_FLIGHT = (
    "SELECT count(*) FROM pg_stat_activity a WHERE a.datname = current_database() "
    "AND a.wait_event_type = 'Lock' AND EXISTS (SELECT 1 FROM pg_locks l "
    "WHERE l.pid = a.pid AND l.locktype = 'advisory' AND l.granted)"
)


def test_sigkill_mid_catch_up_then_a_new_worker_finishes_exactly_once(
    pg_url: str, tmp_path: Path
) -> None:
    store = open_sql(pg_url)
    events = seeded(130, seed=11)  # about 1,300 events
    store.append(T, events[:300])
    writer = Writer(lambda: open_sql(pg_url), events[300:], batch=40, pace=0.01)
    first = WorkerProcess(pg_url, tmp_path, *WORKER)
    second: WorkerProcess | None = None
    try:
        writer.start()

        def mid_catch_up() -> bool:
            cursors = store.projection_cursors(T)
            head = store.get_last_log_seq(T)  # read after the cursors: head >= cursors
            return min(cursors.values()) > 0 and min(cursors.values()) < head

        wait_until(mid_catch_up, 30, "the worker to be mid catch-up", first.log)
        # Hold the projection tables still (reads go on), so that the worker's
        # next batch stops half-way through its writes; kill it right there.
        with psycopg.connect(pg_url) as blocker:
            blocker.execute(f"LOCK TABLE {PROJECTION_TABLES} IN SHARE MODE")

            def batch_in_flight() -> bool:
                with psycopg.connect(pg_url) as probe:
                    row = probe.execute(IN_FLIGHT).fetchone()
                return row is not None and row[0] > 0

            wait_until(batch_in_flight, 30, "a worker batch to be in flight", first.log)
            first.signal(signal.SIGKILL)
            assert first.wait(10) == -signal.SIGKILL
            blocker.rollback()  # the dead worker's backend now finds its client gone
        killed_owner_leases = store.leases(T)
        at_kill = store.projection_cursors(T)
        # A killed worker releases nothing: its leases stay until they expire.
        assert killed_owner_leases, "the killed worker held no lease"
        assert {owner_pid(lease.owner) for lease in killed_owner_leases.values()} == {first.pid}
        assert min(at_kill.values()) < store.get_last_log_seq(T)

        # Health: the dead worker's live leases still say someone is on it...
        for status in projection_statuses(store, T):
            expected = "catching_up" if status.lag_events else "healthy"
            assert status.status == expected and status.owner is not None, status
        # ...until they expire: then lagging projections are stalled, nobody on them.
        wait_until(
            lambda: {s.status for s in projection_statuses(store, T)} == {"stalled"},
            TTL + 3,
            "the dead worker's projections to show as stalled",
        )
        assert all(s.owner is None and s.lag_events > 0 for s in projection_statuses(store, T))

        second = WorkerProcess(pg_url, tmp_path, *WORKER)
        wait_until(lambda: writer.done or bool(writer.errors), 60, "the writer to finish")
        assert writer.errors == []
        writer.stop()
        head = store.get_last_log_seq(T)
        assert head == len(events)
        wait_until(
            lambda: caught_up(store, T),
            60,
            "the new worker to catch up",
            lambda: progress(store, T) + "\n" + second.log(),  # type: ignore[union-attr]
        )
        # The new worker took over every lease of the dead one (after expiry).
        leases = store.leases(T)
        assert {owner_pid(lease.owner) for lease in leases.values()} == {second.pid}
        assert all(seq >= at_kill[name] for name, seq in store.projection_cursors(T).items())
        assert second.popen.poll() is None, second.log()
    finally:
        writer.stop()
        first.kill()
        if second is not None:
            second.kill()
    assert_exactly_once(store, T)
    store.close()
