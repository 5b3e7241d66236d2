"""Worker processes on PostgreSQL: kill -9 mid-batch, racing leases, SIGTERM drain."""

from __future__ import annotations

import signal
import subprocess

import pytest

from decisiongraph.runtime.rebuild import compare_with_rebuild, replay_digests
from decisiongraph.store.postgres import PostgresEventStore
from tests.runtime.support import caught_up, seeded, start_worker, stop, wait_until

T = "default"
FAST = ("--batch-size", "100", "--lease-ttl", "1.5", "--poll-interval", "0.1")


def assert_exactly_once(store: PostgresEventStore) -> None:
    comparison = compare_with_rebuild(store, T)
    assert comparison.match, comparison.first_difference
    assert store.digests(T) == replay_digests(store, T)
    # An event applied twice would count a third time in its summary.
    assert {row.event_count for row in store.iter_summaries(T)} <= {1, 2}


def test_kill_9_mid_batch_then_restart(pg_url: str) -> None:
    store = PostgresEventStore(pg_url)
    events = seeded(400, seed=11)
    store.append(T, events[:100])
    worker = start_worker(pg_url, *FAST)
    try:
        batches = [events[i : i + 100] for i in range(100, len(events), 100)]
        for batch in batches[: len(batches) // 2]:
            store.append(T, batch)
        wait_until(
            lambda: 0 < store.projection_cursor(T) < store.get_last_log_seq(T) or False,
            what="the worker to be mid catch-up",
        )
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        for batch in batches[len(batches) // 2 :]:
            store.append(T, batch)  # appends go on while no worker runs
        assert store.projection_cursor(T) < store.get_last_log_seq(T)
        worker = start_worker(pg_url, *FAST)
        wait_until(lambda: caught_up(store, T), 60, "catch-up after restart")
    finally:
        stop(worker)
    assert_exactly_once(store)
    store.close()


def owner_pid(owner: str) -> int:
    return int(owner.split(":")[1])


def test_racing_workers_share_leases_and_take_over(pg_url: str) -> None:
    store = PostgresEventStore(pg_url)
    events = seeded(300, seed=12)
    store.append(T, events[:50])
    workers = [start_worker(pg_url, *FAST) for _ in range(3)]
    try:
        half = len(events) // 2
        for start in range(50, half, 100):
            store.append(T, events[start : min(start + 100, half)])
        wait_until(lambda: caught_up(store, T), 60, "catch-up by racing workers")
        leases = store.leases(T)
        assert set(leases) == {
            "context_graph",
            "trace_summary",
            "precedent_index",
            "policy_eval_index",
        }
        pids = {worker.pid for worker in workers}
        assert {owner_pid(lease.owner) for lease in leases.values()} <= pids
        victim_owner = leases["context_graph"].owner
        victim = next(w for w in workers if w.pid == owner_pid(victim_owner))
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        store.append(T, events[len(events) // 2 :])
        wait_until(
            lambda: store.leases(T)["context_graph"].owner != victim_owner,
            20,
            "another worker to take the dead worker's lease",
        )
        wait_until(lambda: caught_up(store, T), 60, "catch-up after take-over")
    finally:
        for worker in workers:
            stop(worker)
    assert_exactly_once(store)
    store.close()


def test_sigterm_drains_and_releases_leases(pg_url: str) -> None:
    store = PostgresEventStore(pg_url)
    store.append(T, seeded(200, seed=13))
    worker = start_worker(pg_url, *FAST)
    try:
        wait_until(lambda: store.projection_cursor(T) > 0, 30, "the worker to start applying")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    except subprocess.TimeoutExpired:  # pragma: no cover - reported as a failure below
        pytest.fail("worker did not exit on SIGTERM")
    finally:
        stop(worker)
    assert store.leases(T) == {}  # released on the way out
    head = store.get_last_log_seq(T)
    for cursor in store.projection_cursors(T).values():
        assert cursor == head or cursor % 100 == 0  # whole batches only
    worker = start_worker(pg_url, *FAST)
    try:
        wait_until(lambda: caught_up(store, T), 60, "catch-up after restart")
    finally:
        stop(worker)
    assert_exactly_once(store)
    store.close()
