"""``replay_digests(store, tenant, to_log_seq=k)``: the projections as they
were at log position k, computed on a private replica (both backends)."""

from __future__ import annotations

import pytest

from decisiongraph.core.envelope import envelope_from_dict
from decisiongraph.core.errors import DecisionGraphError
from decisiongraph.runtime.rebuild import Replay, replay_digests, replay_log
from tests.conftest import GOLDEN_SCENARIOS, load_golden
from tests.runtime.support import T, open_sql, seeded


def test_replay_to_k_equals_a_fresh_store_holding_the_first_k_events(backend_url: str) -> None:
    events = seeded(25, seed=38)  # about 250 events
    store = open_sql(backend_url)
    store.append(T, events)
    head = store.get_last_log_seq(T)
    assert head == len(events)
    for k in (0, 1, 10, 97, head - 1, head):
        tenant = f"prefix-{k}"
        if k:
            store.append(tenant, events[:k])
        store.project_pending(tenant)
        assert replay_digests(store, T, to_log_seq=k) == store.digests(tenant), f"k={k}"
    # The whole log: no position is the head; past the head, or before the
    # start, is a state the log has never been in, refused (not the head's).
    full = replay_digests(store, T)
    assert full == replay_digests(store, T, to_log_seq=head)
    # No operator skip: a plain replay of the log, and none reported.
    assert replay_log(store, T) == Replay(full, head, {})
    assert full != replay_digests(store, T, to_log_seq=head - 1)
    for beyond in (head + 1, head + 100, -1, -5):
        with pytest.raises(DecisionGraphError) as caught:
            replay_digests(store, T, to_log_seq=beyond)
        assert caught.value.code == "DG_ERR_INVALID_ARGUMENT"
        assert str(head) in caught.value.message or "0" in caught.value.message
    # Replay only reads the live store: its (unprojected) projections did not move.
    assert set(store.projection_cursors(T).values()) == {0}
    assert list(store.iter_summaries(T)) == []
    store.project_pending(T)
    assert store.digests(T) == full
    store.close()


@pytest.mark.parametrize("scenario", GOLDEN_SCENARIOS)
def test_replay_to_the_golden_scenarios_end_gives_the_golden_digests(
    backend_url: str, scenario: str
) -> None:
    golden, expected = load_golden(scenario)
    store = open_sql(backend_url)
    stored = store.append(T, [envelope_from_dict(event) for event in golden])
    last = stored[-1].log_seq
    assert last == len(golden)
    store.append(T, seeded(10, seed=38))  # the log goes on past the scenario
    assert store.get_last_log_seq(T) > last
    assert replay_digests(store, T, to_log_seq=last).as_dict() == expected
    assert replay_digests(store, T).as_dict() != expected
    store.close()
