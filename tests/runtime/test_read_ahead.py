"""Long catch-ups fold the next batch on a second connection while the
current one commits. Whatever the interleaving, every event is applied
exactly once; a projection moved by someone else, or an operator's skip,
hands the rest to the ordinary one-batch-at-a-time loop. Both backends."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from decisiongraph.projections.rows import PROJECTION_NAMES, TRACE_SUMMARY
from decisiongraph.store.read_ahead import ReadAhead
from decisiongraph.store.sql_base import SqlEventStore
from decisiongraph.store.sqlite import BULK_CACHE_KIB, CACHE_KIB, SQLiteEventStore
from tests.runtime.poison import POISON, TINY, P, Poisoned, step_until
from tests.runtime.support import T, assert_exactly_once, open_sql, seeded

BATCH = 200


@pytest.fixture
def requests(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Positions the read-ahead helper was asked to prepare (a spy only)."""
    asked: list[int] = []
    original = ReadAhead.request

    def spy(self: ReadAhead[object], after: int) -> None:
        asked.append(after)
        original(self, after)

    monkeypatch.setattr(ReadAhead, "request", spy)
    return asked


@pytest.fixture
def backlog(backend_url: str) -> Iterator[SqlEventStore]:
    store = open_sql(backend_url)
    store.append(T, seeded(120, seed=8))  # about 1,200 events, none projected
    try:
        yield store
    finally:
        store.close()


def test_a_long_catch_up_reads_ahead_and_applies_each_event_once(
    backlog: SqlEventStore, requests: list[int]
) -> None:
    head = backlog.get_last_log_seq(T)
    assert backlog.project_pending(T, batch_size=BATCH) == head
    assert requests[0] == 0 and len(requests) >= head // BATCH
    assert requests == sorted(requests)  # batch after batch, none twice
    assert backlog.projection_cursors(T) == dict.fromkeys(PROJECTION_NAMES, head)
    assert_exactly_once(backlog)


def test_projections_at_different_cursors_take_the_ordinary_loop(
    backlog: SqlEventStore, requests: list[int]
) -> None:
    backlog.project_pending(T, batch_size=BATCH, projections=[TRACE_SUMMARY], max_batches=2)
    backlog.project_pending(T, batch_size=BATCH)
    assert requests == []
    assert_exactly_once(backlog)


def test_another_applier_moving_a_projection_midway_loses_nothing(
    backend_url: str, backlog: SqlEventStore, requests: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the catch-up runs, a second store applies a batch of one
    projection (it waits for the writer's commit, then races it)."""
    other = open_sql(backend_url)
    racers: list[threading.Thread] = []
    original = ReadAhead.request

    def race(self: ReadAhead[object], after: int) -> None:
        original(self, after)
        if len(racers) < 2 and after:
            racer = threading.Thread(
                target=other.project_pending,
                args=(T,),
                kwargs={"batch_size": BATCH, "projections": [TRACE_SUMMARY], "max_batches": 1},
            )
            racers.append(racer)
            racer.start()

    monkeypatch.setattr(ReadAhead, "request", race)
    try:
        backlog.project_pending(T, batch_size=BATCH)
        for racer in racers:
            racer.join(60)
            assert not racer.is_alive()
        backlog.project_pending(T, batch_size=BATCH)  # whatever the race left over
    finally:
        other.close()
    assert racers
    head = backlog.get_last_log_seq(T)
    assert backlog.projection_cursors(T) == dict.fromkeys(PROJECTION_NAMES, head)
    assert_exactly_once(backlog)


def test_an_operator_skip_in_range_is_honoured(
    poisoned: Poisoned,
    requests: list[int],
) -> None:
    """An event skipped for a projection stays skipped when a long catch-up of
    that projection passes it again: read-ahead stops short of it."""
    store = poisoned.store
    worker = poisoned.worker(TINY)
    step_until(worker, lambda: worker.parked)
    (letter,) = store.dead_letters(T)
    store.resolve_dead_letter(T, letter.id, action="skip", actor="ops", reason="known bad")
    head = store.get_last_log_seq(T)
    step_until(worker, lambda: store.projection_cursor(T, P) == head)
    before = list(store.iter_summaries(T))
    store.reset_projections(T, [P])
    store.project_pending(T, batch_size=50, projections=[P])
    assert store.projection_cursor(T, P) == head
    assert list(store.iter_summaries(T)) == before
    assert requests and all(after < POISON for after in requests)


def test_read_ahead_opens_databases_whose_path_needs_quoting(
    tmp_path: Path, requests: list[int]
) -> None:
    folder = tmp_path / "odd #1 ?x% name"
    folder.mkdir()
    store = SQLiteEventStore(folder / "log 1#.db")
    try:
        store.append(T, seeded(60, seed=3))
        head = store.get_last_log_seq(T)
        assert store.project_pending(T, batch_size=BATCH) == head
        assert requests  # the second, read-only connection opened
        assert_exactly_once(store)
    finally:
        store.close()
    reader = SQLiteEventStore(folder / "log 1#.db", read_only=True)
    try:
        assert reader.get_last_log_seq(T) == head
    finally:
        reader.close()


def test_several_batches_can_share_one_transaction(
    backlog: SqlEventStore, requests: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a commit interval of three batches, a long catch-up commits about
    a third as often and still applies every event exactly once."""
    monkeypatch.setattr(backlog, "catch_up_commit_events", 3 * BATCH)
    commits = _count_transactions(backlog, monkeypatch)
    head = backlog.get_last_log_seq(T)
    assert backlog.project_pending(T, batch_size=BATCH) == head
    batches = -(-head // BATCH)
    assert len(requests) >= batches - 1
    assert len(commits) <= -(-batches // 3) + 1  # + the ordinary loop's empty look
    assert backlog.projection_cursors(T) == dict.fromkeys(PROJECTION_NAMES, head)
    assert_exactly_once(backlog)


def test_a_failure_undoes_every_batch_of_its_transaction(
    backlog: SqlEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second batch of a shared transaction fails: the first is undone
    with it, the cursors stay where the transaction began, and a second run
    applies everything exactly once."""
    monkeypatch.setattr(backlog, "catch_up_commit_events", 3 * BATCH)
    original = SqlEventStore._write_prepared
    written: list[int] = []

    def fail_second(self: SqlEventStore, *args: object, **kwargs: object) -> None:
        written.append(1)
        if len(written) == 2:
            raise RuntimeError("disk on fire")
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(SqlEventStore, "_write_prepared", fail_second)
    with pytest.raises(RuntimeError, match="disk on fire"):
        backlog.project_pending(T, batch_size=BATCH)
    assert backlog.projection_cursors(T) == dict.fromkeys(PROJECTION_NAMES, 0)
    assert list(backlog.iter_summaries(T)) == []
    monkeypatch.setattr(SqlEventStore, "_write_prepared", original)
    head = backlog.get_last_log_seq(T)
    assert backlog.project_pending(T, batch_size=BATCH) == head
    assert_exactly_once(backlog)


def test_a_catch_up_with_nothing_to_do_takes_no_write_lock(
    backlog: SqlEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every append wakes every worker; one that finds its projection at the
    head must not queue behind (or hold up) the appenders."""
    head = backlog.get_last_log_seq(T)
    backlog.project_pending(T, batch_size=BATCH)
    commits = _count_transactions(backlog, monkeypatch)
    assert backlog.project_pending(T, batch_size=BATCH, max_batches=1) == 0
    assert backlog.project_pending(T, projections=[TRACE_SUMMARY], until_log_seq=head) == 0
    assert commits == []
    backlog.append(T, seeded(2, seed=77))  # work again: the locked pass runs
    assert backlog.project_pending(T, batch_size=BATCH, max_batches=1) > 0
    assert commits
    assert_exactly_once(backlog)


def test_a_long_sqlite_catch_up_gets_a_larger_page_cache_for_its_duration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SQLiteEventStore(tmp_path / "bulk.db")
    seen: list[int] = []
    original = ReadAhead.request

    def spy(self: ReadAhead[object], after: int) -> None:
        with store._read() as cur:
            seen.append(int(cur.execute("PRAGMA cache_size").fetchone()[0]))
        original(self, after)

    def cache_size() -> int:
        with store._read() as cur:
            return int(cur.execute("PRAGMA cache_size").fetchone()[0])

    monkeypatch.setattr(ReadAhead, "request", spy)
    try:
        store.append(T, seeded(60, seed=5))
        assert cache_size() == -CACHE_KIB
        store.project_pending(T, batch_size=BATCH)
        assert seen and set(seen) == {-BULK_CACHE_KIB}
        assert cache_size() == -CACHE_KIB
        # A failing catch-up gives the memory back too.
        store.reset_projections(T)
        monkeypatch.setattr(SqlEventStore, "_write_prepared", _failing)
        with pytest.raises(RuntimeError):
            store.project_pending(T, batch_size=BATCH)
        assert cache_size() == -CACHE_KIB
    finally:
        store.close()


def _failing(*args: object, **kwargs: object) -> None:
    raise RuntimeError("disk on fire")


def _count_transactions(store: SqlEventStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Write transactions ``store`` opens from now on (a spy only)."""
    opened: list[int] = []
    original = store._write

    def counting() -> object:
        opened.append(1)
        return original()

    monkeypatch.setattr(store, "_write", counting)
    return opened
