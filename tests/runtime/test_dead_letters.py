"""A poison event: retried, dead-lettered, the projection stops; retry or skip."""

from __future__ import annotations

import sqlite3
import time

import psycopg
import pytest

from decisiongraph.core.canonical_json import json_p
from decisiongraph.core.errors import DecisionGraphError
from decisiongraph.runtime.backoff import Backoff
from decisiongraph.runtime.health import projection_statuses
from decisiongraph.runtime.process import open_runtime_store as open_sql_store
from decisiongraph.runtime.rebuild import replay_digests
from decisiongraph.runtime.worker import ProjectionWorker
from decisiongraph.store.postgres import is_postgres_url
from tests.runtime.support import seeded

T = "default"
P = "trace_summary"


def raw_sql(url: str, *statements: tuple[str, tuple[object, ...]]) -> None:
    """Behind the store's back, as a tamperer or a bad migration would."""
    if is_postgres_url(url):
        with psycopg.connect(url, autocommit=True) as conn:
            for sql, params in statements:
                conn.execute(sql.replace("?", "%s"), params)
    else:
        with sqlite3.connect(url) as conn:
            for sql, params in statements:
                conn.execute(sql, params)


def drop_append_only(url: str) -> None:
    if is_postgres_url(url):
        raw_sql(url, ("DROP TRIGGER dg_event_log_append_only ON dg_event_log", ()))
    else:
        raw_sql(url, ("DROP TRIGGER dg_event_log_no_update", ()))


def run_until(worker: ProjectionWorker, done: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():  # type: ignore[operator]
        assert time.monotonic() < deadline, "worker did not get there in time"
        worker.step()
        time.sleep(0.005)


@pytest.fixture
def poisoned(backend_url: str):  # type: ignore[no-untyped-def]
    store = open_sql_store(backend_url)
    store.append(T, seeded(20, seed=21))
    poison = 37
    original = store.list_events(T, since_log_seq=poison - 1, limit=1)[0]
    drop_append_only(backend_url)
    raw_sql(
        backend_url,
        (
            "UPDATE dg_event_log SET payload_json = ? WHERE tenant_id = ? AND log_seq = ?",
            ('{"tampered":true}', T, poison),
        ),
    )
    worker = ProjectionWorker(
        store, T, P, "test-owner", batch_size=10, max_attempts=3, backoff=Backoff(0.001, 0.005)
    )
    yield store, worker, poison, original, backend_url
    store.close()


def test_poison_event_is_dead_lettered_and_nothing_is_skipped(poisoned) -> None:  # type: ignore[no-untyped-def]
    store, worker, poison, original, url = poisoned
    run_until(worker, lambda: worker.parked)
    letters = store.dead_letters(T, projection=P)
    assert len(letters) == 1
    letter = letters[0]
    assert (letter.log_seq, letter.event_id, letter.error_code, letter.attempts) == (
        poison,
        original.event_id,
        "DG_ERR_CONFLICT",
        3,
    )
    assert letter.status == "open" and letter.first_seen_at <= letter.last_seen_at
    status = {s.projection: s for s in projection_statuses(store, T)}[P]
    assert status.status == "failed" and status.cursor == poison - 1
    assert status.last_error and "DG_ERR_CONFLICT" in status.last_error
    for _ in range(5):
        worker.step()
    assert store.projection_cursor(T, P) == poison - 1  # parked, never past the poison

    # The fix: restore the row, then retry.
    payload_json = json_p(original.payload)
    raw_sql(
        url,
        (
            "UPDATE dg_event_log SET payload_json = ? WHERE tenant_id = ? AND log_seq = ?",
            (payload_json, T, poison),
        ),
    )
    retried = store.resolve_dead_letter(
        T, letter.id, action="retry", actor="ops", reason="row restored"
    )
    assert retried.status == "retry"
    head = store.get_last_log_seq(T)
    run_until(worker, lambda: store.projection_cursor(T, P) == head)
    assert store.get_dead_letter(T, letter.id).status == "resolved"
    store.project_pending(T)
    assert store.digests(T) == replay_digests(store, T)
    assert {s.status for s in projection_statuses(store, T)} == {"healthy"}


def test_skip_is_explicit_and_audited(poisoned) -> None:  # type: ignore[no-untyped-def]
    store, worker, poison, _, _ = poisoned
    run_until(worker, lambda: worker.parked)
    letter = store.dead_letters(T, projection=P)[0]
    with pytest.raises(DecisionGraphError) as caught:
        store.resolve_dead_letter(T, letter.id, action="skip", actor="ops", reason="  ")
    assert caught.value.code == "DG_ERR_INVALID_ARGUMENT"
    skipped = store.resolve_dead_letter(
        T, letter.id, action="skip", actor="ops", reason="known bad row"
    )
    assert skipped.status == "skipped"
    head = store.get_last_log_seq(T)
    run_until(worker, lambda: store.projection_cursor(T, P) == head)
    audit = store.audit_log(T)
    assert audit[0].action == "dead_letter.skip" and audit[0].reason == "known bad row"
    assert audit[0].actor == "ops" and audit[0].target == f"{P}@{poison}"
    with pytest.raises(DecisionGraphError) as caught:
        store.resolve_dead_letter(T, letter.id, action="retry", actor="ops", reason="again")
    assert caught.value.code == "DG_ERR_CONFLICT"
    with pytest.raises(DecisionGraphError) as caught:
        store.resolve_dead_letter(T, 999_999, action="retry", actor="ops", reason="x")
    assert caught.value.code == "DG_ERR_NOT_FOUND"
    # Other projections, untouched by the skip, still stop at the poison.
    with pytest.raises(DecisionGraphError):
        store.project_pending(T, projections=["context_graph"], batch_size=1)
    assert store.projection_cursor(T, "context_graph") == poison - 1
