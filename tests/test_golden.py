"""Every golden scenario reproduces its expected digests, on every backend."""

from __future__ import annotations

import pytest

from decisiongraph import DecisionGraph
from tests.conftest import GOLDEN_SCENARIOS, load_golden


@pytest.mark.parametrize("scenario", GOLDEN_SCENARIOS)
def test_golden_digests_batch_append(backend_url: str, scenario: str) -> None:
    events, expected = load_golden(scenario)
    with DecisionGraph(backend_url) as dg:
        dg.append_events(events)
        assert dg.digests().as_dict() == expected
        dg.replay_projections(batch_size=1)
        assert dg.digests().as_dict() == expected
        assert dg.verify() is None


@pytest.mark.parametrize("scenario", GOLDEN_SCENARIOS)
def test_golden_digests_one_by_one(backend_url: str, scenario: str) -> None:
    events, expected = load_golden(scenario)
    with DecisionGraph(backend_url) as dg:
        for event in events:
            dg.append_events([event])
        assert dg.get_projection_health(include_digests=True).digests is not None
        assert dg.digests().as_dict() == expected
