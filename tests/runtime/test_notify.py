"""Wake-ups on PostgreSQL: NOTIFY only shortens waits, polling alone suffices."""

from __future__ import annotations

import psycopg
import pytest

from decisiongraph.projections.rows import PROJECTION_NAMES
from decisiongraph.runtime.rebuild import compare_with_rebuild
from decisiongraph.runtime.supervisor import Supervisor, SupervisorConfig
from decisiongraph.store.postgres import NOTIFY_CHANNEL, PostgresEventStore
from tests.runtime.support import T, caught_up, progress, seeded, stays_false, wait_until


def test_without_notify_workers_catch_up_by_polling(pg_url: str) -> None:
    writer = PostgresEventStore(pg_url, notify=False)
    events = seeded(40, seed=31)
    writer.append(T, events[:100])
    supervisor = Supervisor(
        lambda: PostgresEventStore(pg_url),
        SupervisorConfig(tenants=[T], poll_interval=0.3, batch_size=100),
    ).start()
    try:
        wait_until(lambda: caught_up(writer, T), 20, "the start-up catch-up")
        for start in range(100, len(events), 60):  # silent appends while the workers idle
            writer.append(T, events[start : start + 60])
        wait_until(
            lambda: caught_up(writer, T),
            20,
            "a catch-up by polling alone",
            lambda: progress(writer, T),
        )
        assert writer.get_last_log_seq(T) == len(events)
        assert supervisor.restarts == 0
    finally:
        supervisor.stop()
    assert compare_with_rebuild(writer, T).match
    writer.close()


def test_notify_wakes_idle_workers_long_before_the_poll_interval(pg_url: str) -> None:
    silent = PostgresEventStore(pg_url, notify=False)
    loud = PostgresEventStore(pg_url, notify=True)
    events = seeded(30, seed=33)
    supervisor = Supervisor(
        lambda: PostgresEventStore(pg_url),
        SupervisorConfig(tenants=[T], poll_interval=30.0),
    ).start()
    try:
        # Every worker has taken its lease and found nothing: all idle on a 30 s poll.
        wait_until(lambda: set(silent.leases(T)) == set(PROJECTION_NAMES), 20, "the leases")
        silent.append(T, events[:100])
        # Control: without a notification nothing wakes them (so the next
        # catch-up is the notification's doing, not a busy loop's).
        assert stays_false(lambda: silent.projection_cursor(T) > 0, 1.5), (
            "workers applied events without being woken: the poll is 30 s"
        )
        loud.append(T, events[100:])
        wait_until(
            lambda: caught_up(loud, T),
            10,  # well under the 30 s poll interval
            "a NOTIFY wake-up",
            lambda: progress(loud, T),
        )
        assert loud.get_last_log_seq(T) == len(events)
    finally:
        supervisor.stop()
    assert compare_with_rebuild(loud, T).match
    silent.close()
    loud.close()


@pytest.mark.parametrize(("env", "expected"), [("1", True), ("0", False), (None, True)])
def test_dg_notify_env_turns_the_notification_on_and_off(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, env: str | None, expected: bool
) -> None:
    if env is None:
        monkeypatch.delenv("DG_NOTIFY", raising=False)
    else:
        monkeypatch.setenv("DG_NOTIFY", env)
    store = PostgresEventStore(pg_url)
    events = seeded(2, seed=39)
    with psycopg.connect(pg_url, autocommit=True) as listener:
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        stored = store.append(T, events)
        received = [
            n.payload for n in listener.notifies(timeout=5.0 if expected else 0.5, stop_after=1)
        ]
    store.close()
    if expected:
        assert received == [f"{stored[-1].log_seq}:{T}"]
    else:
        assert received == []
