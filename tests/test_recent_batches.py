"""Shared decoded batches: served to each projection once, never "nothing"."""

from __future__ import annotations

from decisiongraph.facade import DecisionGraph
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
