"""Waiting for a position on a projection that does not exist is a typo, and
every client says so at once with the same code and the valid names
(embedded, remote, remote async), instead of a KeyError or a True."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from decisiongraph import Client, DecisionGraph
from decisiongraph.core.errors import InvalidArgumentError
from decisiongraph.projections.rows import PROJECTION_NAMES
from decisiongraph.sdk import AsyncClient
from tests.conftest import load_golden
from tests.service.conftest import Server


def assert_names_the_valid_ones(error: InvalidArgumentError) -> None:
    assert error.code == "DG_ERR_INVALID_ARGUMENT"
    assert "'nope'" in error.message
    assert all(name in error.message for name in PROJECTION_NAMES)


def test_waiting_on_an_unknown_projection_is_refused_everywhere(
    server: Server, tmp_path: Path
) -> None:
    events, _ = load_golden("dealdesk")
    with DecisionGraph(str(tmp_path / "wait.db")) as embedded:
        embedded.append_events(events)
        with pytest.raises(InvalidArgumentError) as caught:
            embedded.wait_for(10, timeout=5, projections=["nope"])
        assert_names_the_valid_ones(caught.value)
        with pytest.raises(InvalidArgumentError):
            embedded.wait_for(1, timeout=5, projections=["trace_summary", "nope"])
        assert embedded.wait_for(len(events), timeout=5, projections=["trace_summary"])

    with Client(server.url, server.keys["writer"]) as remote:
        remote.append_events(events)
        with pytest.raises(InvalidArgumentError) as caught:
            remote.wait_for(10, timeout=5, projections=["nope"])
        assert_names_the_valid_ones(caught.value)
        assert remote.wait_for(len(events), timeout=30, projections=["trace_summary"])

    async def remote_async() -> None:
        async with AsyncClient(server.url, server.keys["writer"]) as client:
            with pytest.raises(InvalidArgumentError) as caught:
                await client.wait_for(10, timeout=5, projections=["nope"])
            assert_names_the_valid_ones(caught.value)

    asyncio.run(remote_async())
