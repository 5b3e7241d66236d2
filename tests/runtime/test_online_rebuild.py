"""Online rebuild under load: workers and a writer run, readers keep reading.

Reads may report lag (DG_ERR_PROJECTION_OUT_OF_DATE) but nothing else, and
never a half-built projection: a finished trace's neighbourhood, edges and
summary never shrink while the shadow copy is built and swapped in. Health
shows ``rebuilding`` (with the shadow position) while it runs.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from decisiongraph import DecisionGraph
from decisiongraph.core.errors import DecisionGraphError
from decisiongraph.projections.rows import CONTEXT_GRAPH, TRACE_SUMMARY
from decisiongraph.runtime.health import projection_statuses
from decisiongraph.runtime.rebuild import compare_with_rebuild, rebuild_online
from decisiongraph.runtime.supervisor import Supervisor, SupervisorConfig
from decisiongraph.store.postgres import PostgresEventStore, is_postgres_url
from decisiongraph.store.sql_base import SqlEventStore
from decisiongraph.store.sql_runtime import REBUILD_CLAIM_TTL
from tests.runtime.support import (
    T,
    Writer,
    caught_up,
    open_sql,
    progress,
    seeded,
    stays_false,
    wait_until,
)

CONFIG = SupervisorConfig(tenants=[T], poll_interval=0.05, batch_size=50)


@contextmanager
def running_system(url: str) -> Iterator[tuple[SqlEventStore, DecisionGraph]]:
    """(store for the rebuild and the writer, facade for the reader), workers on.

    SQLite runs embedded: the facade's workers share its connection and so do
    the writer and the rebuild. PostgreSQL: a supervisor with a connection per
    worker, and the reader, writer and rebuild on connections of their own.
    """
    if is_postgres_url(url):
        supervisor = Supervisor(lambda: PostgresEventStore(url), CONFIG).start()
        store = open_sql(url)
        reader = DecisionGraph(url)
        try:
            yield store, reader
        finally:
            supervisor.stop()
            reader.close()
            store.close()
    else:
        with DecisionGraph(url, workers=True, worker_config=CONFIG) as dg:
            store = dg.store
            assert isinstance(store, SqlEventStore)
            yield store, dg


class Reader(threading.Thread):
    """Reads a finished trace over and over; records anything wrong."""

    def __init__(self, dg: DecisionGraph, trace_id: str) -> None:
        super().__init__(name="test-reader", daemon=True)
        self.dg = dg
        self.store = dg.store
        assert isinstance(self.store, SqlEventStore)
        self.trace_id = trace_id
        self.node = f"trace:{trace_id}"
        graph = dg.get_context_subgraph("trace", trace_id)
        self.nodes = len(graph.nodes)
        self.edges = len(self.store.edges_touching(T, [self.node], None))
        assert self.nodes > 1 and self.edges > 0
        self.problems: list[str] = []
        self.halt = threading.Event()
        self.seen_rebuilding = threading.Event()
        self.read_while_rebuilding = threading.Event()
        self.reads = 0
        self.lagging = 0

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                self.read_once()
            except BaseException as exc:
                self.problems.append(f"{type(exc).__name__}: {exc}")

    def read_once(self) -> None:
        statuses = projection_statuses(self.store, T)
        rebuilding = [s for s in statuses if s.status == "rebuilding"]
        for status in rebuilding:
            if status.rebuild_position is None:
                self.problems.append("rebuilding without a shadow position")
        if rebuilding:
            self.seen_rebuilding.set()
        try:
            nodes = len(self.dg.get_context_subgraph("trace", self.trace_id).nodes)
        except DecisionGraphError as exc:
            if exc.code != "DG_ERR_PROJECTION_OUT_OF_DATE":
                self.problems.append(f"subgraph read: {exc.code}: {exc.message}")
            self.lagging += 1
        else:
            self.reads += 1
            if nodes < self.nodes:
                self.problems.append(f"half-built graph: {nodes} < {self.nodes} nodes")
            if rebuilding:
                self.read_while_rebuilding.set()
        # Raw reads, no freshness check: they see the live rows whatever the lag.
        edges = len(self.store.edges_touching(T, [self.node], None))
        if edges < self.edges:
            self.problems.append(f"half-built graph: {edges} < {self.edges} edges")
        summary = self.store.get_summary(T, self.trace_id)
        if summary is None or summary.event_count != 2 or summary.outcome is None:
            self.problems.append(f"half-built summary: {summary}")
        self.store.digests(T)


@pytest.mark.parametrize("projection", [CONTEXT_GRAPH, TRACE_SUMMARY])
def test_online_rebuild_under_load_with_readers(backend_url: str, projection: str) -> None:
    events = seeded(120, seed=37)  # about 1,200 events
    first = 400
    with running_system(backend_url) as (store, dg):
        store.append(T, events[:first])
        wait_until(lambda: caught_up(store, T), 20, "the initial catch-up")
        reader = Reader(dg, events[0].trace_id)
        writer = Writer(
            (lambda: store)
            if not is_postgres_url(backend_url)
            else (lambda: open_sql(backend_url)),
            events[first:],
            batch=20,
            pace=0.02,
            close_store=is_postgres_url(backend_url),
        )
        positions: list[tuple[int, int]] = []

        def on_progress(shadow: int, head: int) -> None:
            positions.append((shadow, head))
            if len(positions) == 1:
                # Hold the writer until a reader has read, current, mid-rebuild.
                writer.running.clear()
                wait_until(
                    reader.read_while_rebuilding.is_set,
                    20,
                    "a current read while rebuilding",
                    lambda: f"{progress(store, T)} problems={reader.problems[:3]}",
                )
                writer.running.set()

        try:
            reader.start()
            writer.start()
            head_before = store.get_last_log_seq(T)
            live = rebuild_online(
                store, T, projection, owner="test", batch_size=25, on_progress=on_progress
            )
            assert live >= head_before and live <= store.get_last_log_seq(T)
            wait_until(lambda: writer.done or bool(writer.errors), 60, "the writer")
            assert writer.errors == []
            writer.stop()
            wait_until(lambda: caught_up(store, T), 30, "catch-up", lambda: progress(store, T))
        finally:
            writer.stop()
            reader.halt.set()
            if reader.ident is not None:
                reader.join(30)
        assert reader.problems == []
        assert reader.seen_rebuilding.is_set()
        assert len(positions) >= 2
        shadows = [shadow for shadow, _ in positions]
        assert shadows == sorted(shadows) and shadows[0] > 0
        state = store.projection_states(T)[projection]
        assert not state.rebuilding and state.rebuild_owner is None
        assert store.shadow_cursor(T, projection) == 0  # shadow emptied by the swap
        comparison = compare_with_rebuild(store, T)
        assert comparison.match, comparison.first_difference
        assert store.get_last_log_seq(T) == len(events)
        assert {s.status for s in projection_statuses(store, T)} == {"healthy"}


def test_a_second_rebuild_of_the_same_projection_is_refused(backend_url: str) -> None:
    store = open_sql(backend_url)
    store.append(T, seeded(10, seed=38))
    store.project_pending(T)
    store.begin_rebuild(T, CONTEXT_GRAPH, "first")
    try:
        with pytest.raises(DecisionGraphError) as caught:
            rebuild_online(store, T, CONTEXT_GRAPH, owner="second")
        assert caught.value.code == "DG_ERR_CONFLICT"
        # The refused rebuild must not have cancelled the running one.
        state = store.projection_states(T)[CONTEXT_GRAPH]
        assert state.rebuilding and state.rebuild_owner == "first"
    finally:
        store.end_rebuild(T, CONTEXT_GRAPH, "first")
        store.close()


REBUILDER = """
import sys, threading
from decisiongraph.runtime.process import open_runtime_store
from decisiongraph.runtime.rebuild import rebuild_online

def hold(shadow, head):
    print("progress", shadow, head, flush=True)
    threading.Event().wait()  # stay mid-rebuild until killed

store = open_runtime_store(sys.argv[1])
rebuild_online(store, sys.argv[2], sys.argv[3], owner="doomed", batch_size=10, on_progress=hold)
"""


def test_a_killed_rebuilder_does_not_block_rebuilds_forever(pg_url: str) -> None:
    store = open_sql(pg_url)
    store.append(T, seeded(10, seed=42))
    store.project_pending(T)
    process = subprocess.Popen(
        [sys.executable, "-c", REBUILDER, pg_url, T, CONTEXT_GRAPH],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()  # blocks until the first progress report
        assert line.startswith("progress"), line
        status = {s.projection: s for s in projection_statuses(store, T)}[CONTEXT_GRAPH]
        assert status.status == "rebuilding"
        process.send_signal(signal.SIGKILL)
        assert process.wait(10) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)

    def can_rebuild() -> bool:
        try:
            rebuild_online(store, T, CONTEXT_GRAPH, owner="ops")
        except DecisionGraphError as exc:
            assert exc.code == "DG_ERR_CONFLICT"
            return False
        return True

    try:
        # Give a claim the kind of time a lease gets before it is taken over.
        wait_until(can_rebuild, 5, "a new rebuild once the rebuilder is dead")
        assert {s.status for s in projection_statuses(store, T)} == {"healthy"}
    finally:
        store.close()


def test_a_live_but_slow_rebuild_keeps_its_claim(pg_url: str) -> None:
    store = open_sql(pg_url)
    store.append(T, seeded(10, seed=46))
    store.project_pending(T)
    reached, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def hold(shadow: int, head: int) -> None:
        reached.set()
        release.wait(30)  # a slow step: the rebuilder is alive, just not done

    def rebuild() -> None:
        own = open_sql(pg_url)
        try:
            rebuild_online(own, T, CONTEXT_GRAPH, owner="slow", batch_size=10, on_progress=hold)
        except BaseException as exc:
            errors.append(exc)
        finally:
            own.close()

    def rebuilding() -> bool:
        states = {s.projection: s.status for s in projection_statuses(store, T)}
        return states[CONTEXT_GRAPH] == "rebuilding"

    rebuilder = threading.Thread(target=rebuild, name="slow-rebuilder", daemon=True)
    rebuilder.start()
    try:
        assert reached.wait(20), "the rebuild never reported progress"
        # Alive for longer than a dead rebuilder's claim lasts: still its claim.
        assert stays_false(lambda: not rebuilding(), REBUILD_CLAIM_TTL + 1.0)
        with pytest.raises(DecisionGraphError) as caught:
            rebuild_online(store, T, CONTEXT_GRAPH, owner="second")
        assert caught.value.code == "DG_ERR_CONFLICT"
    finally:
        release.set()
        rebuilder.join(30)
    assert errors == []
    assert {s.status for s in projection_statuses(store, T)} == {"healthy"}
    assert compare_with_rebuild(store, T).match
    store.close()
