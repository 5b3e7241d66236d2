"""Embedded workers (SQLite): ``DecisionGraph(path, workers=True)`` catches up
what is pending when it opens, with no new traffic to wake it."""

from __future__ import annotations

from pathlib import Path

from decisiongraph import DecisionGraph
from decisiongraph.runtime.health import projection_statuses
from decisiongraph.runtime.rebuild import compare_with_rebuild, replay_digests
from decisiongraph.runtime.supervisor import SupervisorConfig
from decisiongraph.store import open_store
from decisiongraph.store.sql_base import SqlEventStore
from tests.runtime.support import T, seeded, trace_boundary


def test_workers_catch_up_pending_events_at_start_without_new_traffic(sqlite_path: str) -> None:
    writer = open_store(sqlite_path)
    assert isinstance(writer, SqlEventStore)
    events = seeded(65, seed=36)
    split = trace_boundary(events, 60)
    stored = writer.append(T, events[:split])  # about 600 events, none projected
    head = stored[-1].log_seq
    assert head == writer.get_last_log_seq(T) == len(stored)
    before = projection_statuses(writer, T)
    assert {s.status for s in before} == {"stalled"}  # lag, and nobody on it
    assert all(s.cursor == 0 and s.lag_events == head and s.owner is None for s in before)
    writer.close()

    with DecisionGraph(
        sqlite_path, workers=True, worker_config=SupervisorConfig(poll_interval=0.2)
    ) as dg:
        assert dg.wait_for(head, timeout=20)
        store = dg.store
        assert isinstance(store, SqlEventStore)
        statuses = dg.projection_statuses()
        assert {s.status for s in statuses} == {"healthy"}
        assert all(s.cursor == head and s.lag_events == 0 for s in statuses)
        assert all(s.owner is not None and s.owner == dg.supervisor.owner for s in statuses)  # type: ignore[union-attr]
        assert dg.digests() == replay_digests(store, T)
        assert compare_with_rebuild(store, T).match
        assert not dg.wait_for(head + 1, timeout=0.1)  # nothing there yet: a timeout
        # New traffic through the facade is picked up as well.
        dg.store.append(T, events[split:])
        new_head = dg.store.get_last_log_seq(T)
        assert new_head > head
        assert dg.wait_for(new_head, timeout=20)
        assert dg.digests() == replay_digests(store, T)
    # Closing stops the workers and releases their leases.
    reopened = open_store(sqlite_path)
    assert isinstance(reopened, SqlEventStore)
    assert reopened.leases(T) == {}
    assert {s.status for s in projection_statuses(reopened, T)} == {"healthy"}
    reopened.close()


def test_workers_find_a_tenant_that_appears_later(tmp_path: Path) -> None:
    path = str(tmp_path / "late.db")
    with DecisionGraph(path, workers=True, worker_config=SupervisorConfig(poll_interval=0.2)) as dg:
        late = dg.store.append("late-tenant", seeded(5, seed=40))
        later = dg.for_tenant("late-tenant")
        assert later.wait_for(late[-1].log_seq, timeout=20)
        store = dg.store
        assert isinstance(store, SqlEventStore)
        assert compare_with_rebuild(store, "late-tenant").match
