"""Fixes from a second audit of the projection runtime, on both backends.

A stored payload that is not even JSON is dead-lettered like any poison
event and can be skipped (it used to crash the worker in a loop, leaving
nothing to retry or skip); a rebuild that applies past an open dead letter settles it, so the
projection moves on; an error left by an earlier worker is cleared once the
projection applies past it; a comparison covers the policy-evaluation
index, which no digest does; a rebuild that came to nothing says so in the
audit trail; settings that would spin or never let a lease go are refused;
workers take turns on a fixed number of connections, however many tenants.
"""

from __future__ import annotations

import math

import psycopg
import pytest

from decisiongraph.core.errors import DecisionGraphError
from decisiongraph.projections.rows import POLICY_EVAL_INDEX
from decisiongraph.runtime import operations
from decisiongraph.runtime.rebuild import compare_with_rebuild
from decisiongraph.runtime.supervisor import Supervisor, SupervisorConfig
from tests.runtime.poison import (
    POISON,
    P,
    Poisoned,
    raw_sql,
    set_payload,
    status_of,
    step_until,
)
from tests.runtime.support import T, caught_up, open_sql, seeded, wait_until


def open_letters(poisoned: Poisoned) -> list[object]:
    return [
        letter for letter in poisoned.store.dead_letters(T, projection=P) if letter.status == "open"
    ]


def test_a_payload_that_is_not_json_is_dead_lettered(poisoned: Poisoned) -> None:
    set_payload(poisoned.url, POISON, "{not json")
    worker = poisoned.worker()
    step_until(worker, lambda: worker.parked)
    (letter,) = poisoned.store.dead_letters(T, projection=P)
    assert (letter.log_seq, letter.event_id, letter.status) == (POISON, poisoned.event_id, "open")
    assert letter.error_code == "DG_ERR_CONFLICT"  # its payload fails its hash
    assert status_of(poisoned.store).status == "failed"
    assert poisoned.store.projection_cursor(T, P) == POISON - 1  # nothing skipped
    operations.skip_dead_letter(
        poisoned.store, T, letter.id, actor="ops", reason="unrecoverable", confirm="skip"
    )
    step_until(worker, lambda: poisoned.store.projection_cursor(T, P) > POISON)


def test_a_rebuild_past_an_open_dead_letter_settles_it(poisoned: Poisoned) -> None:
    worker = poisoned.worker()
    step_until(worker, lambda: worker.parked)
    assert status_of(poisoned.store).status == "failed"
    set_payload(poisoned.url, POISON, poisoned.original_payload)  # the fix
    cursor = operations.rebuild(
        poisoned.store, T, P, actor="ops", reason="payload restored", confirm=P
    )
    assert cursor > POISON
    step_until(worker, lambda: not worker.parked)
    assert open_letters(poisoned) == []
    assert [letter.status for letter in poisoned.store.dead_letters(T, projection=P)] == [
        "resolved"
    ]
    poisoned.store.append(T, seeded(1, seed=5))  # new events are applied again
    head = poisoned.store.get_last_log_seq(T)
    step_until(worker, lambda: poisoned.store.projection_cursor(T, P) == head)
    state = status_of(poisoned.store)
    assert (state.status, state.last_error) == ("healthy", None)


def test_an_error_left_by_an_earlier_worker_is_cleared(poisoned: Poisoned) -> None:
    first = poisoned.worker()
    step_until(first, lambda: status_of(poisoned.store).last_error is not None)
    set_payload(poisoned.url, POISON, poisoned.original_payload)  # fixed while it was down
    second = poisoned.worker()  # a restart: knows nothing of the first one's failure
    head = poisoned.store.get_last_log_seq(T)
    step_until(second, lambda: poisoned.store.projection_cursor(T, P) == head)
    assert status_of(poisoned.store).last_error is None


def test_a_rebuild_that_came_to_nothing_is_audited_as_failed(poisoned: Poisoned) -> None:
    with pytest.raises(DecisionGraphError):
        operations.rebuild(poisoned.store, T, P, actor="ops", reason="try", confirm=P)
    requested, failed = reversed(poisoned.store.audit_log(T, 2))
    assert requested.action == "projection.rebuild"
    assert failed.action == operations.REBUILD_FAILED
    assert failed.details["code"] and failed.details["message"]


def test_a_comparison_covers_the_policy_evaluation_index(backend_url: str) -> None:
    store = open_sql(backend_url)
    try:
        store.append(T, seeded(10, seed=3))
        store.project_pending(T)
        assert compare_with_rebuild(store, T).match
        raw_sql(backend_url, "DELETE FROM dg_policy_eval_index WHERE tenant_id = ?", (T,))
        compared = compare_with_rebuild(store, T)
        assert (compared.match, compared.first_difference) == (False, POLICY_EVAL_INDEX)
    finally:
        store.close()


@pytest.mark.parametrize(
    "settings",
    [
        {"poll_interval": 0.0},
        {"poll_interval": -1.0},
        {"poll_interval": math.nan},
        {"lease_ttl": 0.0},
        {"lease_ttl": math.inf},
        {"batch_size": 0},
        {"max_attempts": True},
    ],
)
def test_settings_that_would_spin_or_hold_a_lease_forever_are_refused(
    settings: dict[str, float],
) -> None:
    with pytest.raises(DecisionGraphError) as refused:
        SupervisorConfig(**settings)  # type: ignore[arg-type]
    assert refused.value.code == "DG_ERR_INVALID_ARGUMENT"


def test_workers_take_turns_on_a_fixed_number_of_connections(pg_url: str) -> None:
    tenants = [f"tenant-{index}" for index in range(6)]
    probe = open_sql(pg_url)
    for tenant in tenants:
        probe.append(tenant, seeded(3, seed=len(tenant)))
    name = pg_url.rsplit("/", 1)[1]

    def connections() -> int:
        with psycopg.connect(pg_url, autocommit=True) as admin:
            row = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> "
                "pg_backend_pid()",
                (name,),
            ).fetchone()
        assert row is not None
        return int(row[0])

    before = connections()  # the probe's own
    supervisor = Supervisor(
        lambda: open_sql(pg_url), SupervisorConfig(poll_interval=0.05, connections=2)
    ).start()
    try:
        wait_until(lambda: all(caught_up(probe, tenant) for tenant in tenants), 60, "catch-up")
        # 24 workers, yet 2 worker connections, tenant discovery's and LISTEN's.
        assert connections() - before <= 4
    finally:
        supervisor.stop()
    for tenant in tenants:
        assert compare_with_rebuild(probe, tenant).match
    probe.close()
