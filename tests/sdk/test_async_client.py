"""The async SDK against a real server: helpers, trace scope, typed errors."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from decisiongraph.core.errors import NotFoundError
from decisiongraph.sdk import AsyncClient
from tests.service.conftest import start_server

SOURCE = {"producer_id": "async_agent", "system": "tests"}
ACTOR = {"actor_type": "agent", "actor_id": "bot"}


def test_async_client_records_and_reads(tmp_path: Path) -> None:
    server = start_server(str(tmp_path / "async.db"))

    async def scenario() -> None:
        async with AsyncClient(server.url, server.keys["writer"]) as client:
            async with client.trace(
                "deal",
                "async decision",
                {"entity_type": "account", "entity_id": "a1"},
                SOURCE,
                ACTOR,
            ) as t:
                await t.evaluate_policy({"policy_id": "cap", "policy_version": "1"}, [], "allow")
                await t.commit_action("act1", "success")
            with pytest.raises(RuntimeError):
                async with client.trace(
                    "deal", "fails", {"entity_type": "account", "entity_id": "a2"}, SOURCE, ACTOR
                ) as failing:
                    raise RuntimeError("model timed out")
            ok = await client.get_trace_events(t.trace_id)
            assert [e["event_type"] for e in ok] == [
                "TraceStarted",
                "PolicyEvaluated",
                "ActionCommitted",
                "TraceFinished",
            ]
            assert ok[-1]["payload"]["outcome"] == "success"
            failed = await client.get_trace_events(failing.trace_id)
            assert failed[-1]["payload"] == {
                "outcome": "failure",
                "summary": "RuntimeError: model timed out",
            }
            # Concurrent appends to one trace still get consecutive positions.
            trace_id = await client.start_trace(
                "deal", "parallel", {"entity_type": "account", "entity_id": "a3"}, SOURCE, ACTOR
            )
            await asyncio.gather(
                *(
                    client.observe_input(
                        trace_id,
                        f"i{n}",
                        {"system": "s", "object_type": "o", "object_id": str(n)},
                        [],
                        SOURCE,
                        ACTOR,
                    )
                    for n in range(10)
                )
            )
            events = await client.get_trace_events(trace_id)
            assert [e["trace_seq"] for e in events] == list(range(11))
            with pytest.raises(NotFoundError) as caught:
                await client.get_trace_events("missing")
            assert caught.value.request_id

    try:
        asyncio.run(scenario())
    finally:
        server.process.terminate()
        server.process.wait(30)
