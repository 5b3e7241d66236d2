"""A poison event (its stored payload no longer matches its hash, or a bug in a
fold raises for it): retried with backoff, dead-lettered after max_attempts,
the projection stops there and skips nothing; an operator retries after a
fix, or skips (audited), and a comparison with a rebuild and a replay
honour the skip. Both backends."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from decisiongraph.core.errors import DecisionGraphError
from decisiongraph.core.operator_records import DeadLetter
from decisiongraph.projections import batch
from decisiongraph.projections.rows import (
    CONTEXT_GRAPH,
    POLICY_EVAL_INDEX,
    PRECEDENT_INDEX,
    PROJECTION_NAMES,
)
from decisiongraph.runtime import operations
from decisiongraph.runtime.backoff import Backoff
from decisiongraph.runtime.health import projection_statuses
from decisiongraph.runtime.rebuild import compare_with_rebuild, replay_digests, replay_log
from tests.runtime.poison import (
    POISON,
    TRACE_FINISH,
    TRACE_START,
    P,
    Poisoned,
    set_payload,
    status_of,
    step_until,
)
from tests.runtime.support import T, open_sql, seeded
from tests.test_cli import dg


def test_poison_is_retried_with_backoff_then_parked_and_nothing_after_it_applies(
    poisoned: Poisoned,
) -> None:
    store = poisoned.store
    worker = poisoned.worker(Backoff(base=0.2, cap=0.4))
    started = time.monotonic()
    step_until(worker, lambda: worker.seconds_until_retry() is not None)
    # First failure: the good events before the poison are in, a retry is due
    # later, and until then a step does nothing.
    assert store.projection_cursor(T, P) == POISON - 1
    assert 0 < (worker.seconds_until_retry() or 0) <= 0.2
    assert worker.step() == 0
    assert store.dead_letters(T) == []
    retrying = status_of(store)
    assert retrying.status == "catching_up"  # retrying, not failed yet
    assert retrying.last_error is not None and "DG_ERR_CONFLICT" in retrying.last_error

    step_until(worker, lambda: worker.parked)
    # Attempts 1 -> 2 -> 3 waited at least 0.1 s + 0.2 s (jittered backoff).
    assert time.monotonic() - started >= 0.3

    (letter,) = store.dead_letters(T)
    assert (letter.tenant_id, letter.projection_name, letter.log_seq) == (T, P, POISON)
    assert (letter.event_id, letter.error_code, letter.attempts) == (
        poisoned.event_id,
        "DG_ERR_CONFLICT",
        3,
    )
    assert letter.status == "open" and letter.resolved_at is None
    assert letter.first_seen_at and letter.first_seen_at <= letter.last_seen_at
    assert str(POISON) in letter.message

    status = status_of(store)
    assert (status.status, status.cursor, status.open_dead_letters) == ("failed", POISON - 1, 1)
    assert status.last_error is not None and "DG_ERR_CONFLICT" in status.last_error

    # Everything before the poison, and only that, is applied.
    assert store.digests(T).trace_summary == replay_digests(store, T, POISON - 1).trace_summary
    for _ in range(20):
        assert worker.step() == 0
    assert store.projection_cursor(T, P) == POISON - 1
    stuck = store.get_summary(T, poisoned.trace_ids[TRACE_START - 1])
    assert stuck is not None and stuck.event_count == 1 and stuck.outcome is None
    assert store.get_summary(T, poisoned.trace_ids[TRACE_FINISH]) is None  # the next trace
    assert status_of(store).status == "failed"


def test_retry_after_the_fix_resolves_and_catches_up(poisoned: Poisoned) -> None:
    store, worker = poisoned.store, poisoned.worker()
    step_until(worker, lambda: worker.parked)
    (letter,) = store.dead_letters(T)

    set_payload(poisoned.url, POISON, poisoned.original_payload)  # the fix
    retried = store.resolve_dead_letter(T, letter.id, action="retry", actor="ops", reason="fixed")
    assert retried.status == "retry"
    assert status_of(store).status != "failed"  # no open letter any more
    head = store.get_last_log_seq(T)
    step_until(worker, lambda: store.projection_cursor(T, P) == head)

    done = store.get_dead_letter(T, letter.id)
    assert done.status == "resolved" and done.resolved_at is not None
    assert not worker.parked
    finished = store.get_summary(T, poisoned.trace_ids[TRACE_START - 1])
    assert finished is not None and finished.event_count == 2
    status = status_of(store)
    assert (status.status, status.cursor, status.last_error) == ("healthy", head, None)
    audit = store.audit_log(T)
    assert (audit[0].action, audit[0].actor, audit[0].reason) == (
        "dead_letter.retry",
        "ops",
        "fixed",
    )
    assert audit[0].details["dead_letter_id"] == letter.id

    store.project_pending(T)  # the other projections never met the poison after the fix
    assert store.digests(T) == replay_digests(store, T)
    assert {s.status for s in projection_statuses(store, T)} == {"healthy"}


def test_retry_without_a_fix_parks_again_and_counts_attempts(poisoned: Poisoned) -> None:
    store, worker = poisoned.store, poisoned.worker()
    step_until(worker, lambda: worker.parked)
    (letter,) = store.dead_letters(T)
    store.resolve_dead_letter(T, letter.id, action="retry", actor="ops", reason="try again")
    step_until(worker, lambda: store.get_dead_letter(T, letter.id).status == "open")
    again = store.get_dead_letter(T, letter.id)
    assert again.attempts == 6  # 3 + 3: a repeat failure bumps the count
    assert again.first_seen_at == letter.first_seen_at
    assert again.last_seen_at >= letter.last_seen_at
    assert store.projection_cursor(T, P) == POISON - 1
    assert status_of(store).status == "failed"
    assert len(store.dead_letters(T)) == 1


def test_skip_moves_past_the_poison_and_is_audited(poisoned: Poisoned) -> None:
    store, worker = poisoned.store, poisoned.worker()
    step_until(worker, lambda: worker.parked)
    (letter,) = store.dead_letters(T)

    for blank in ("", "   "):
        with pytest.raises(DecisionGraphError) as caught:
            store.resolve_dead_letter(T, letter.id, action="skip", actor="ops", reason=blank)
        assert caught.value.code == "DG_ERR_INVALID_ARGUMENT"
    with pytest.raises(DecisionGraphError) as caught:
        store.resolve_dead_letter(T, letter.id, action="ignore", actor="ops", reason="x")
    assert caught.value.code == "DG_ERR_INVALID_ARGUMENT"
    assert store.get_dead_letter(T, letter.id).status == "open"  # refused calls change nothing
    assert store.audit_log(T) == []

    skipped = store.resolve_dead_letter(
        T, letter.id, action="skip", actor="ops", reason="known bad row"
    )
    assert skipped.status == "skipped" and skipped.resolution == "known bad row"
    assert skipped.resolved_at is not None
    head = store.get_last_log_seq(T)
    step_until(worker, lambda: store.projection_cursor(T, P) == head)
    assert status_of(store).status == "healthy"
    # The trace around the poison finished (the skipped event wrote nothing).
    finished = store.get_summary(T, poisoned.trace_ids[TRACE_START - 1])
    assert finished is not None and finished.event_count == 2

    (entry,) = store.audit_log(T)
    assert (entry.action, entry.reason, entry.actor) == ("dead_letter.skip", "known bad row", "ops")
    assert entry.target == f"{P}@{POISON}"
    assert entry.details == {"dead_letter_id": letter.id, "event_id": poisoned.event_id}

    with pytest.raises(DecisionGraphError) as caught:
        store.resolve_dead_letter(T, letter.id, action="retry", actor="ops", reason="again")
    assert caught.value.code == "DG_ERR_CONFLICT"
    with pytest.raises(DecisionGraphError) as caught:
        store.resolve_dead_letter(T, letter.id, action="skip", actor="ops", reason="again")
    assert caught.value.code == "DG_ERR_CONFLICT"
    with pytest.raises(DecisionGraphError) as caught:
        store.resolve_dead_letter(T, 999_999, action="retry", actor="ops", reason="x")
    assert caught.value.code == "DG_ERR_NOT_FOUND"
    assert len(store.audit_log(T)) == 1

    # A skip is per projection: the others still stop at the poison.
    with pytest.raises(DecisionGraphError) as caught:
        store.project_pending(T, projections=[CONTEXT_GRAPH], batch_size=1)
    assert caught.value.code == "DG_ERR_CONFLICT"
    assert store.projection_cursor(T, CONTEXT_GRAPH) == POISON - 1


@pytest.fixture
def fold_bug(backend_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Poisoned]:
    """A bug in the trace-summary fold: it raises ValueError for one event."""
    store = open_sql(backend_url)
    events = seeded(20, seed=21)
    store.append(T, events)
    bad_event_id = store.list_events(T, since_log_seq=POISON - 1, limit=1)[0].event_id
    real = batch.summary_write

    def buggy(event: Any) -> Any:
        if event.event_id == bad_event_id:
            raise ValueError("fold bug: cannot handle this payload")
        return real(event)

    monkeypatch.setattr(batch, "summary_write", buggy)
    try:
        yield Poisoned(backend_url, store, "", bad_event_id, [e.trace_id for e in events])
    finally:
        store.close()


def test_a_plain_exception_in_a_fold_is_dead_lettered_after_the_good_events(
    fold_bug: Poisoned, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = fold_bug.store
    worker = fold_bug.worker()
    with caplog.at_level(logging.WARNING, logger="decisiongraph.runtime.worker"):
        step_until(worker, lambda: worker.parked)  # no exception escapes the step
    assert store.projection_cursor(T, P) == POISON - 1  # the good events before it are in
    (letter,) = store.dead_letters(T)
    assert (letter.projection_name, letter.log_seq, letter.event_id) == (
        P,
        POISON,
        fold_bug.event_id,
    )
    assert (letter.error_code, letter.attempts) == ("DG_ERR_INTERNAL", 3)
    assert "ValueError" in letter.message and "fold bug" in letter.message
    status = status_of(store)
    assert (status.status, status.cursor) == ("failed", POISON - 1)
    assert status.last_error is not None and status.last_error.startswith("DG_ERR_INTERNAL")
    # Each failed attempt is a warning naming where; the dead letter an error.
    retries = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(retries) == 2
    assert all(f"log_seq {POISON}" in r.getMessage() and P in r.getMessage() for r in retries)
    assert all("DG_ERR_INTERNAL" in r.getMessage() and T in r.getMessage() for r in retries)
    (parked,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "dead-lettered" in parked.getMessage() and fold_bug.event_id in parked.getMessage()
    assert parked.exc_info is not None  # a bug's traceback is logged for its fixer

    monkeypatch.undo()  # the fix ships
    store.resolve_dead_letter(T, letter.id, action="retry", actor="ops", reason="fold fixed")
    head = store.get_last_log_seq(T)
    step_until(worker, lambda: store.projection_cursor(T, P) == head)
    assert store.get_dead_letter(T, letter.id).status == "resolved"
    assert status_of(store).last_error is None
    assert store.digests(T).trace_summary == replay_digests(store, T).trace_summary


def skip_where_it_failed(poisoned: Poisoned) -> tuple[DeadLetter, int]:
    """Let the worker dead-letter the tampered event, skip it (audited) and
    catch that projection up; the letter and the head are returned."""
    store, worker = poisoned.store, poisoned.worker()
    step_until(worker, lambda: worker.parked)
    (letter,) = store.dead_letters(T)
    store.resolve_dead_letter(T, letter.id, action="skip", actor="ops", reason="known bad row")
    head = store.get_last_log_seq(T)
    step_until(worker, lambda: store.projection_cursor(T, P) == head)
    return letter, head


def skip_in_every_projection(poisoned: Poisoned) -> int:
    """Dead-letter the tampered event in every projection, skip it there
    (audited), and catch every projection up to the head, which is returned."""
    store = poisoned.store
    letter, head = skip_where_it_failed(poisoned)
    for name in (CONTEXT_GRAPH, PRECEDENT_INDEX, POLICY_EVAL_INDEX):  # these never met it
        letter_for = store.add_dead_letter(
            T,
            name,
            POISON,
            poisoned.event_id,
            "DG_ERR_CONFLICT",
            "tampered",
            1,
            letter.first_seen_at,
        )
        store.resolve_dead_letter(T, letter_for.id, action="skip", actor="ops", reason="same row")
    store.project_pending(T)
    return head


def test_compare_after_an_audited_skip_rebuilds_with_the_same_skip(poisoned: Poisoned) -> None:
    store = poisoned.store
    skip_in_every_projection(poisoned)

    comparison = compare_with_rebuild(store, T)
    assert comparison.match, comparison.first_difference
    assert comparison.skipped == {name: (POISON,) for name in PROJECTION_NAMES}

    done = dg("compare", poisoned.url)
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.strip().splitlines()
    assert first == "match"
    assert "skips in effect" in second and f"{P}@{POISON}" in second


def test_compare_honours_a_skip_of_one_projection_only(poisoned: Poisoned) -> None:
    store = poisoned.store
    _, head = skip_where_it_failed(poisoned)
    # The other projections still stop at the tampered event: compared there.
    comparison = compare_with_rebuild(store, T)
    assert comparison.match, comparison.first_difference
    assert comparison.positions[P] == head
    assert comparison.skipped == {P: (POISON,)}
    # A replay runs every projection to one position: the skip is in effect
    # for one of them only, and the others cannot pass the tampered event.
    with pytest.raises(DecisionGraphError) as caught:
        replay_log(store, T)
    assert caught.value.code == "DG_ERR_CONFLICT"
    assert replay_log(store, T, POISON - 1).skipped == {}


SKIPS_LINE = "operator skips in effect (the replay skipped them too): " + ", ".join(
    f"{name}@{POISON}" for name in sorted(PROJECTION_NAMES)
)


def test_replay_honours_the_audited_skips_in_effect(poisoned: Poisoned) -> None:
    store = poisoned.store
    before = replay_log(store, T, POISON - 1)
    assert before.skipped == {} and before.to_log_seq == POISON - 1
    # The tampered event stops a replay that has no skip to honour.
    with pytest.raises(DecisionGraphError) as caught:
        replay_log(store, T)
    assert caught.value.code == "DG_ERR_CONFLICT"

    head = skip_in_every_projection(poisoned)
    at_head = replay_log(store, T)
    assert at_head.digests == store.digests(T)  # equals the live projections
    assert at_head.to_log_seq == head
    assert at_head.skipped == {name: (POISON,) for name in PROJECTION_NAMES}
    assert replay_digests(store, T) == at_head.digests
    # Skips after the position are not in effect there; at the skipped event
    # the replay passed over it, which writes nothing.
    assert replay_log(store, T, POISON - 1) == before
    at_poison = replay_log(store, T, POISON)
    assert at_poison.digests == before.digests and at_poison.skipped == at_head.skipped

    # The audited operator action (library and API) returns the skips too.
    replayed = operations.replay(store, T, actor="ops", reason="audit")
    assert replayed == at_head
    assert store.audit_log(T)[0].action == "projection.replay"

    done = dg("replay", poisoned.url, "--json")
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()  # stdout: the one JSON object, nothing else
    assert json.loads(line) == store.digests(T).as_dict()
    assert done.stderr.strip() == SKIPS_LINE
    human = dg("replay", poisoned.url)
    assert human.returncode == 0, human.stderr
    assert human.stdout.splitlines()[-1] == SKIPS_LINE
    assert "full_projection: " + at_head.digests.full_projection in human.stdout
    earlier = dg("replay", poisoned.url, "--json", "--to", str(POISON - 1))
    assert earlier.returncode == 0, earlier.stderr
    assert json.loads(earlier.stdout) == before.digests.as_dict()
    assert earlier.stderr == ""  # no skip in effect there, none reported
