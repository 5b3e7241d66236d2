"""Shared decoded batches: served to each projection once, never "nothing"."""

from __future__ import annotations

import threading
from collections.abc import Callable

from decisiongraph.facade import DecisionGraph
from decisiongraph.projections.projected_event import ReplayedEvent
from decisiongraph.store.recent_batches import RecentBatches
from tests.contract.helpers import full_trace


def test_a_batch_is_served_once_per_projection_and_respects_limits() -> None:
    with DecisionGraph(":memory:", project_on_append=False) as dg:
        stored = dg.append_events(full_trace("t1"))
    cache = RecentBatches()
    cache.put("default", 0, stored, frozenset({3}), frozenset({"a"}))
    # The reader that put it does not get it back (a retry reads afresh).
    assert cache.get("default", 0, 100, None, frozenset({"a"})) is None
    shared = cache.get("default", 0, 2, None, frozenset({"b"}))
    assert shared is not None and [e.log_seq for e in shared[0]] == [1, 2]
    assert shared[1] == frozenset()  # the bad seq 3 lies beyond the prefix
    assert cache.get("default", 0, 100, None, frozenset({"b"})) is None  # once only
    bounded = cache.get("default", 0, 100, 4, frozenset({"c"}))
    assert bounded is not None and [e.log_seq for e in bounded[0]] == [1, 2, 3, 4]
    assert bounded[1] == frozenset({3})
    assert cache.get("other", 0, 100, None, frozenset({"d"})) is None


def test_empty_reads_and_expired_entries_are_not_served() -> None:
    with DecisionGraph(":memory:", project_on_append=False) as dg:
        stored = dg.append_events(full_trace("t1"))
    cache = RecentBatches(ttl=-1.0)  # every entry is already too old
    cache.put("default", 0, [], frozenset(), frozenset({"a"}))
    assert cache.get("default", 0, 10, None, frozenset({"b"})) is None
    cache.put("default", 0, stored, frozenset(), frozenset({"a"}))
    assert cache.get("default", 0, 10, None, frozenset({"b"})) is None  # expired at once


def test_a_position_inside_a_remembered_batch_is_served_from_it() -> None:
    with DecisionGraph(":memory:", project_on_append=False) as dg:
        stored = dg.append_events(full_trace("t1"))
    cache = RecentBatches()
    cache.put("default", 0, stored, frozenset({2, 4}), frozenset({"a"}))
    inside = cache.get("default", 2, 100, None, frozenset({"a"}))
    assert inside is not None and [e.log_seq for e in inside[0]] == [e.log_seq for e in stored[2:]]
    assert inside[1] == frozenset({4})  # bad seqs before the position are not this batch's
    # The same consumer at the same position again is a retry: it reads afresh.
    assert cache.get("default", 2, 100, None, frozenset({"a"})) is None
    assert cache.get("default", len(stored), 100, None, frozenset({"b"})) is None  # past the end


def test_workers_asking_at_once_read_a_position_once() -> None:
    with DecisionGraph(":memory:", project_on_append=False) as dg:
        stored = dg.append_events(full_trace("t1"))
    cache = RecentBatches()
    reads: list[str] = []
    inside = threading.Event()
    release = threading.Event()

    def slow_read() -> tuple[list[ReplayedEvent], frozenset[int]]:
        reads.append("first")
        inside.set()
        assert release.wait(10)
        return list(stored), frozenset()

    def second_read() -> tuple[list[ReplayedEvent], frozenset[int]]:
        reads.append("second")
        return list(stored), frozenset()

    results: dict[str, list[int]] = {}

    def fetch(name: str, read: Callable[[], tuple[list[ReplayedEvent], frozenset[int]]]) -> None:
        batch = cache.fetch("default", 0, 100, None, frozenset({name}), read)
        results[name] = [e.log_seq for e in batch[0]]

    first = threading.Thread(target=fetch, args=("a", slow_read))
    first.start()
    assert inside.wait(10)
    # Whether the second worker arrives while the first still reads (it
    # waits) or after (it finds the batch), it must not read again.
    second = threading.Thread(target=fetch, args=("b", second_read))
    second.start()
    release.set()
    first.join(10)
    second.join(10)
    assert reads == ["first"]
    assert results["a"] == results["b"] == [e.log_seq for e in stored]
    # A retry of the same projection at the same position reads the log again.
    again = cache.fetch("default", 0, 100, None, frozenset({"a"}), second_read)
    assert reads == ["first", "second"] and len(again[0]) == len(stored)
