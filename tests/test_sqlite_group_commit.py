"""SQLite group commit: appends queued behind the connection share one
transaction, yet each succeeds or fails alone and builds on the ones before.

Each test holds the store's connection lock, queues appends from threads,
waits until they are all queued, and lets go: the next holder of the lock
then writes the whole queue in one transaction, which makes the grouping
deterministic rather than a matter of timing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from decisiongraph.core.envelope import EventEnvelope, StoredEvent
from decisiongraph.core.errors import DecisionGraphError
from decisiongraph.facade import DecisionGraph
from decisiongraph.store import group_commit
from decisiongraph.store.sqlite import SQLiteEventStore
from tests.contract.helpers import ORDER, envelope, full_trace

T = "default"


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[SQLiteEventStore]:
    opened = SQLiteEventStore(tmp_path / "group.db")
    yield opened
    opened.close()


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


class Grouped:
    """Appends queued while the test holds the connection, then let go at once."""

    def __init__(self, store: SQLiteEventStore, project: bool = False) -> None:
        self.store = store
        self.project = project
        self.results: dict[int, list[StoredEvent] | DecisionGraphError] = {}
        self.threads: list[threading.Thread] = []
        self.commits = 0
        self._appending = False

    def queue(self, batch: Sequence[EventEnvelope]) -> None:
        """Start an append and wait until it is queued (so queue order is known)."""
        index = len(self.threads)

        def run() -> None:
            try:
                self.results[index] = self.store.append(T, batch, project=self.project)
            except DecisionGraphError as exc:
                self.results[index] = exc

        thread = threading.Thread(target=run)
        self.threads.append(thread)
        thread.start()
        wait_for(lambda: len(self.store._queue) == index + 1, f"append {index} to queue")

    def __enter__(self) -> Grouped:
        self.store._lock.acquire()
        self.store._conn.set_trace_callback(self._count)
        return self

    def _count(self, sql: str) -> None:
        """Count the commits of transactions that appended events (a
        projecting append of stored events only opens a catch-up)."""
        if sql.startswith("BEGIN"):
            self._appending = False
        elif sql.startswith("INSERT INTO dg_event_log"):
            self._appending = True
        elif sql == "COMMIT" and self._appending:
            self.commits += 1

    def __exit__(self, *exc: Any) -> None:
        self.store._lock.release()
        for thread in self.threads:
            thread.join(30)
            assert not thread.is_alive()
        self.store._conn.set_trace_callback(None)


def test_queued_appends_share_one_commit_and_land_in_queue_order(
    store: SQLiteEventStore,
) -> None:
    traces = [full_trace(f"t{index}") for index in range(4)]
    with Grouped(store) as group:
        for events in traces:
            group.queue(events)
    assert group.commits == 1
    stored = [group.results[index] for index in range(4)]
    assert all(isinstance(batch, list) for batch in stored)
    seqs = [event.log_seq for batch in stored for event in batch]  # type: ignore[union-attr]
    assert seqs == list(range(1, sum(len(t) for t in traces) + 1))
    assert store.verify_chain(T) is None


def test_a_failing_append_undoes_only_itself(store: SQLiteEventStore) -> None:
    store.append(T, [envelope("t1", 0, "TraceStarted")])
    with Grouped(store) as group:
        group.queue([envelope("t1", 1, "InputObserved")])
        group.queue([envelope("t1", 2, "InputObserved"), envelope("t1", 7, "InputObserved")])
        group.queue([envelope("t1", 2, "InputObserved", event_id="t1-2b")])
    assert group.commits == 1
    failed = group.results[1]
    assert isinstance(failed, DecisionGraphError)
    assert failed.code == "DG_ERR_EVENT_SEQUENCE_INVALID"
    third = group.results[2]
    assert isinstance(third, list) and third[0].event_id == "t1-2b"
    assert [(e.trace_seq, e.log_seq) for e in store.get_trace_events(T, "t1")] == [
        (0, 1),
        (1, 2),
        (2, 3),
    ]
    assert store.get_next_trace_seq(T, "t1") == 3  # what the cache remembers is true
    assert store.verify_chain(T) is None


def test_a_retry_in_the_same_group_returns_the_event_stored_just_before(
    store: SQLiteEventStore,
) -> None:
    first = full_trace("t1", finish=False)
    with Grouped(store) as group:
        group.queue(first)
        group.queue(first[:2])  # a client retrying part of it
    assert group.commits == 1
    original, retried = group.results[0], group.results[1]
    assert isinstance(original, list) and isinstance(retried, list)
    assert [e.log_seq for e in retried] == [e.log_seq for e in original[:2]]
    assert all(e.repeated for e in retried)
    assert store.log_stats(T).event_count == len(first)


def test_grouped_appends_project_inline_like_single_ones(tmp_path: Path) -> None:
    path = tmp_path / "projected.db"
    with DecisionGraph(path) as dg:
        store = dg._store
        assert isinstance(store, SQLiteEventStore)
        traces = [full_trace(f"t{index}") for index in range(5)]
        with Grouped(store, project=True) as group:
            for events in traces:
                group.queue(events)
        assert group.commits == 1
        total = sum(len(events) for events in traces)
        cursors = store.projection_cursors(T)
        assert cursors == dict.fromkeys(cursors, total)  # projected in that one commit
        with DecisionGraph(":memory:") as alone:
            for events in traces:
                alone.append_events(events)
            assert dg.digests() == alone.digests()


# One pool of events per trace: position p of trace t is the p-th event of a
# full trace; "changed" variants carry another payload under the same key, so
# a later one conflicts with a stored one.
_POOL = {f"g{index}": full_trace(f"g{index}") for index in range(3)}


@st.composite
def _batches(draw: st.DrawFn) -> list[list[tuple[str, int, str]]]:
    """Queues of batches that mostly continue their traces, with retries,
    conflicting retries, stolen event ids and jumps mixed in (a failed batch leaves the
    simulated positions ahead of the store, which makes more failures)."""
    next_position = dict.fromkeys(_POOL, 0)
    batches = []
    for _ in range(draw(st.integers(1, 6))):
        batch = []
        for _ in range(draw(st.integers(1, 4))):
            trace = draw(st.sampled_from(sorted(_POOL)))
            move = draw(
                st.sampled_from(["next", "next", "next", "retry", "changed", "stolen", "jump"])
            )
            reached = next_position[trace]
            if reached < len(ORDER) and (move == "next" or (move == "stolen" and reached)):
                batch.append((trace, reached, move))
                next_position[trace] = reached + 1
            elif move in ("retry", "changed") and reached:
                batch.append((trace, draw(st.integers(0, reached - 1)), move))
            else:
                batch.append((trace, draw(st.integers(0, len(ORDER) - 1)), "next"))
        batches.append(batch)
    return batches


def _batch(picks: list[tuple[str, int, str]]) -> list[EventEnvelope]:
    """``changed``: another payload under a stored key (an idempotency
    conflict); ``stolen``: the trace's first event id on a new event (refused
    by the database itself, after earlier rows of the batch went in)."""
    batch = []
    for trace, position, how in picks:
        event = _POOL[trace][position]
        if how == "changed":
            event = replace(event, payload={**event.payload, "note": "changed"})
        elif how == "stolen":
            event = replace(event, event_id=_POOL[trace][0].event_id)
        batch.append(event)
    return batch


def _outcome(result: list[StoredEvent] | DecisionGraphError) -> object:
    if isinstance(result, DecisionGraphError):
        return (result.code, result.details.get("index"))
    return [(e.log_seq, e.event_id, e.repeated, e.payload_hash) for e in result]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=_batches(), project=st.booleans())
def test_a_group_gives_exactly_what_the_same_appends_give_one_by_one(
    tmp_path_factory: pytest.TempPathFactory, batches: list[list[Any]], project: bool
) -> None:
    folder = tmp_path_factory.mktemp("group")
    alone, grouped = SQLiteEventStore(folder / "alone.db"), SQLiteEventStore(folder / "grouped.db")
    try:
        expected = []
        for picks in batches:
            try:
                expected.append(_outcome(alone.append(T, _batch(picks), project=project)))
            except DecisionGraphError as exc:
                expected.append(_outcome(exc))
        with Grouped(grouped, project=project) as group:
            for picks in batches:
                group.queue(_batch(picks))
        assert group.commits <= 1
        assert [_outcome(group.results[i]) for i in range(len(batches))] == expected
        assert [e.to_dict() for e in grouped.list_events(T)] == [
            {**e.to_dict(), "recorded_at": g.recorded_at}
            for e, g in zip(alone.list_events(T), grouped.list_events(T), strict=True)
        ]
        assert grouped.verify_chain(T) is None
        assert grouped.projection_cursors(T) == alone.projection_cursors(T)
        assert grouped.digests(T) == alone.digests(T)
    finally:
        alone.close()
        grouped.close()


def test_many_threads_appending_at_once_leave_an_exact_log(tmp_path: Path) -> None:
    """Real contention, no choreography: every append lands once, in a
    gap-free log whose chain verifies and whose projections equal a rebuild."""
    traces = {f"c{index}": full_trace(f"c{index}") for index in range(8)}
    with DecisionGraph(tmp_path / "busy.db") as dg:
        errors: list[BaseException] = []

        def agent(events: list[EventEnvelope]) -> None:
            try:
                for event in events:  # one append per event, the agent's pattern
                    dg.append_events([event])
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=agent, args=(events,)) for events in traces.values()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
            assert not thread.is_alive()
        assert errors == []
        store = dg._store
        assert isinstance(store, SQLiteEventStore)
        total = sum(len(events) for events in traces.values())
        assert [e.log_seq for e in store.list_events(T)] == list(range(1, total + 1))
        for trace_id, events in traces.items():
            assert [e.event_id for e in store.get_trace_events(T, trace_id)] == [
                e.event_id for e in events
            ]
        assert store.verify_chain(T) is None
        live = store.digests(T)
        store.reset_projections(T)
        store.project_pending(T)
        assert store.digests(T) == live


# -- appends on their way ------------------------------------------------------


def test_a_writer_waits_for_an_announced_append_and_commits_both_at_once(
    store: SQLiteEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(group_commit, "LINGER_SECONDS", 60.0)  # only the arrival ends it
    commits: list[str] = []
    store._conn.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    arrival = store.expect_append()  # e.g. a request whose body is still being read
    results: dict[str, list[StoredEvent]] = {}
    first = threading.Thread(target=lambda: results.update(a=store.append(T, full_trace("a"))))
    first.start()
    wait_for(lambda: len(store._queue) == 1, "the first append to be queued")
    with store.arriving(arrival):  # the announced append arrives and is queued
        results["b"] = store.append(T, full_trace("b"))
    first.join(30)
    assert not first.is_alive()
    assert len(commits) == 1  # both in the writer's one transaction
    assert [e.log_seq for e in results["a"] + results["b"]] == list(
        range(1, len(full_trace("a")) * 2 + 1)
    )
    assert store._arrivals.on_the_way == 0
    assert store.verify_chain(T) is None


def test_an_append_with_nobody_on_the_way_never_waits(
    store: SQLiteEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(group_commit, "LINGER_SECONDS", 60.0)
    done = threading.Event()
    worker = threading.Thread(target=lambda: (store.append(T, full_trace("a")), done.set()))
    worker.start()
    assert done.wait(30), "a lone append waited for arrivals that never come"
    worker.join()


def test_an_arrival_is_settled_once_even_when_its_append_fails(
    store: SQLiteEventStore,
) -> None:
    arrival = store.expect_append()
    with pytest.raises(DecisionGraphError), store.arriving(arrival):
        store.append(T, [envelope("x", 3, "InputObserved")])  # refused before queueing
    assert store._arrivals.on_the_way == 0
    arrival.settle()  # the request's own finally: nothing more to settle
    assert store._arrivals.on_the_way == 0
    with store.arriving():  # an arrival announced by the block itself
        assert store._arrivals.on_the_way == 1
        store.append(T, full_trace("y"))
        assert store._arrivals.on_the_way == 0  # settled once queued
    assert store._arrivals.on_the_way == 0


def test_an_abandoned_announcement_holds_a_writer_no_longer_than_the_linger(
    store: SQLiteEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(group_commit, "LINGER_SECONDS", 0.05)
    arrival = store.expect_append()  # announced, never appended (e.g. a client gone)
    try:
        stored = store.append(T, full_trace("a"))
    finally:
        arrival.settle()
    assert [e.log_seq for e in stored] == list(range(1, len(stored) + 1))
    assert store._arrivals.on_the_way == 0
