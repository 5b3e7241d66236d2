"""Supervisor behaviour: wake-ups, polling without NOTIFY, restarts, embedded
catch-up at start, online rebuild under load, replay to a past position."""

from __future__ import annotations

import random
import threading
import time

import pytest

from decisiongraph import DecisionGraph
from decisiongraph.core.envelope import envelope_from_dict
from decisiongraph.core.errors import DecisionGraphError
from decisiongraph.query.graph import get_context_subgraph
from decisiongraph.runtime.backoff import Backoff
from decisiongraph.runtime.health import projection_statuses
from decisiongraph.runtime.process import open_runtime_store
from decisiongraph.runtime.rebuild import compare_with_rebuild, rebuild_online, replay_digests
from decisiongraph.runtime.supervisor import Supervisor, SupervisorConfig
from decisiongraph.store.postgres import PostgresEventStore
from decisiongraph.store.sql_base import SqlEventStore
from decisiongraph.store.sqlite import SQLiteEventStore
from tests.conftest import load_golden
from tests.runtime.support import caught_up, seeded, wait_until

T = "default"


def test_workers_catch_up_by_polling_when_notify_is_off(pg_url: str) -> None:
    writer = PostgresEventStore(pg_url, notify=False)
    writer.append(T, seeded(5, seed=31))
    supervisor = Supervisor(
        lambda: PostgresEventStore(pg_url),
        SupervisorConfig(tenants=[T], poll_interval=0.3, listen=True),
    ).start()
    try:
        wait_until(lambda: caught_up(writer, T), 30, "first catch-up")
        writer.append(T, seeded(30, seed=32)[:200])
        wait_until(lambda: caught_up(writer, T), 30, "catch-up by polling alone")
    finally:
        supervisor.stop()
    assert compare_with_rebuild(writer, T).match
    writer.close()


def test_notify_wakes_workers_long_before_the_poll(pg_url: str) -> None:
    writer = PostgresEventStore(pg_url)
    writer.append(T, seeded(3, seed=33))
    supervisor = Supervisor(
        lambda: PostgresEventStore(pg_url),
        SupervisorConfig(tenants=[T], poll_interval=60.0),
    ).start()
    try:
        wait_until(lambda: caught_up(writer, T), 30, "start-up catch-up")
        time.sleep(0.5)  # let every worker go idle on its 60 s poll
        writer.append(T, seeded(10, seed=34)[:50])
        wait_until(lambda: caught_up(writer, T), 20, "a NOTIFY wake-up (the poll is 60 s)")
    finally:
        supervisor.stop()
    writer.close()


class FlakyStore(SQLiteEventStore):
    """A real SQLite store whose catch-up crashes a few times (an outage)."""

    failures = 0

    def project_pending(self, *args: object, **kwargs: object) -> int:  # type: ignore[override]
        if FlakyStore.failures > 0:
            FlakyStore.failures -= 1
            raise RuntimeError("database went away")
        return super().project_pending(*args, **kwargs)  # type: ignore[arg-type]


def test_crashing_worker_is_restarted_and_catches_up(sqlite_path: str) -> None:
    SQLiteEventStore(sqlite_path).append(T, seeded(5, seed=35))
    FlakyStore.failures = 4
    supervisor = Supervisor(
        lambda: FlakyStore(sqlite_path),
        SupervisorConfig(
            tenants=[T], poll_interval=0.05, restart_backoff=Backoff(base=0.01, cap=0.05)
        ),
    ).start()
    probe = SQLiteEventStore(sqlite_path)
    try:
        wait_until(lambda: caught_up(probe, T), 30, "catch-up after restarts")
        assert supervisor.restarts >= 4
    finally:
        supervisor.stop()
    assert compare_with_rebuild(probe, T).match
    probe.close()


def test_backoff_grows_and_is_jittered() -> None:
    backoff = Backoff(base=0.1, cap=5.0)
    rng = random.Random(7)
    delays = [backoff.delay(attempt, rng) for attempt in range(1, 10)]
    for attempt, delay in enumerate(delays, start=1):
        ceiling = min(5.0, 0.1 * 2 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert len({round(d, 6) for d in delays}) == len(delays)


def test_embedded_workers_catch_up_pending_events_at_start(sqlite_path: str) -> None:
    writer = SQLiteEventStore(sqlite_path)
    writer.append(T, seeded(20, seed=36))
    head = writer.get_last_log_seq(T)
    assert {s.status for s in projection_statuses(writer, T)} == {"stalled"}
    writer.close()
    with DecisionGraph(
        sqlite_path, workers=True, worker_config=SupervisorConfig(poll_interval=0.2)
    ) as dg:
        assert dg.wait_for(head, timeout=30)
        assert {s.status for s in dg.projection_statuses()} == {"healthy"}
        assert dg.digests() == replay_digests(open_runtime_store(sqlite_path), T)
        assert not dg.wait_for(head + 1, timeout=0.05)  # nothing there yet: a timeout


@pytest.mark.parametrize("projection", ["context_graph", "trace_summary"])
def test_online_rebuild_while_appending(backend_url: str, projection: str) -> None:
    store = open_runtime_store(backend_url)
    events = seeded(120, seed=37)
    store.append(T, events[:300])
    store.project_pending(T)
    center = events[0].trace_id
    baseline = len(get_context_subgraph(store, T, "trace", center).nodes)
    supervisor = Supervisor(
        (lambda: store)
        if isinstance(store, SQLiteEventStore)
        else (lambda: open_runtime_store(backend_url)),
        SupervisorConfig(tenants=[T], poll_interval=0.05, batch_size=200),
        shared_store=isinstance(store, SQLiteEventStore),
    ).start()
    stop = threading.Event()
    problems: list[str] = []
    seen_rebuilding = threading.Event()

    def write() -> None:
        for start in range(300, len(events), 50):
            if stop.is_set():
                return
            store.append(T, events[start : start + 50])

    def read(reader: SqlEventStore) -> None:
        while not stop.is_set():
            try:
                nodes = get_context_subgraph(reader, T, "trace", center).nodes
                if len(nodes) < baseline:
                    problems.append(f"half-built graph: {len(nodes)} < {baseline} nodes")
            except DecisionGraphError as exc:
                if exc.code != "DG_ERR_PROJECTION_OUT_OF_DATE":
                    problems.append(str(exc))
            rebuilding = [s for s in projection_statuses(reader, T) if s.status == "rebuilding"]
            if rebuilding:
                if rebuilding[0].rebuild_position is None:
                    problems.append("rebuild progress missing from health")
                seen_rebuilding.set()

    reader_store = store if isinstance(store, SQLiteEventStore) else open_runtime_store(backend_url)
    threads = [threading.Thread(target=write), threading.Thread(target=read, args=(reader_store,))]
    for thread in threads:
        thread.start()
    try:
        rebuild_online(
            store,
            T,
            projection,
            owner="test",
            batch_size=20,
            on_progress=lambda done, head: wait_until(
                seen_rebuilding.is_set, 10, "rebuilding seen"
            ),
        )
        threads[0].join(60)
        wait_until(lambda: caught_up(store, T), 60, "catch-up after the rebuild")
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        supervisor.stop()
    assert problems == []
    assert seen_rebuilding.is_set()
    assert compare_with_rebuild(store, T).match
    assert {s.status for s in projection_statuses(store, T)} == {"healthy"}


def test_replay_to_a_past_position(backend_url: str) -> None:
    golden, expected = load_golden("renewal")
    store = open_runtime_store(backend_url)
    store.append(T, [envelope_from_dict(e) for e in golden])
    store.append(T, seeded(10, seed=38))
    assert replay_digests(store, T, len(golden)).as_dict() == expected
    fresh = open_runtime_store(backend_url)
    fresh.append(
        "prefix",
        store.list_events(T, until_log_seq=40)
        and [e.envelope() for e in store.list_events(T, until_log_seq=40)],
    )
    fresh.project_pending("prefix")
    assert replay_digests(store, T, 40) == fresh.digests("prefix")
    store.close()
    fresh.close()
