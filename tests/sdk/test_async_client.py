"""The async SDK against a real server: helpers, trace scope, typed errors."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from decisiongraph import Client, SpooledEvent
from decisiongraph.core.errors import NotFoundError
from decisiongraph.sdk import AsyncClient, RetryPolicy
from tests.sdk.support import kill, restart
from tests.service.conftest import start_server

SOURCE = {"producer_id": "async_agent", "system": "tests"}
ACTOR = {"actor_type": "agent", "actor_id": "bot"}


def test_async_client_records_and_reads(tmp_path: Path) -> None:
    server = start_server(str(tmp_path / "async.db"))

    async def scenario() -> None:
        async with AsyncClient(server.url, server.keys["writer"]) as client:
            assert await client.ready()
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
            assert [e.event_type for e in ok] == [
                "TraceStarted",
                "PolicyEvaluated",
                "ActionCommitted",
                "TraceFinished",
            ]
            assert ok[-1].payload["outcome"] == "success"
            failed = await client.get_trace_events(failing.trace_id)
            assert failed[-1].payload == {
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
            assert [e.trace_seq for e in events] == list(range(11))
            with pytest.raises(NotFoundError) as caught:
                await client.get_trace_events("missing")
            assert caught.value.request_id

    try:
        asyncio.run(scenario())
    finally:
        server.process.terminate()
        server.process.wait(30)


def test_async_reads_return_what_the_sync_client_returns(tmp_path: Path) -> None:
    server = start_server(str(tmp_path / "parity.db"))
    source, actor = SOURCE, ACTOR

    async def scenario() -> None:
        async with AsyncClient(server.url, server.keys["writer"]) as client:
            for n in range(3):
                async with client.trace(
                    "deal", f"d{n}", {"entity_type": "account", "entity_id": "a"}, source, actor
                ) as t:
                    await t.evaluate_policy(
                        {"policy_id": "cap", "policy_version": "1"}, [], "allow"
                    )
            head = (await client.projection_statuses())[0].head
            assert await client.wait_for(head, timeout=30)
            with Client(server.url, server.keys["writer"]) as sync:
                center = f"trace:{t.trace_id}"
                assert await client.get_trace_events(t.trace_id) == sync.get_trace_events(
                    t.trace_id
                )
                assert await client.get_trace_summary(t.trace_id) == sync.get_trace_summary(
                    t.trace_id
                )
                assert [s async for s in client.iter_traces(page_size=2)] == list(
                    sync.iter_traces(page_size=2)
                )
                assert await client.get_context_subgraph(
                    "trace", t.trace_id, 2
                ) == sync.get_context_subgraph("trace", t.trace_id, 2)
                page = await client.list_node_edges(center, limit=1)
                assert page == sync.list_node_edges(center, limit=1)
                assert page.next_cursor is not None
                assert await client.list_node_edges(
                    center, cursor=page.next_cursor, limit=1
                ) == sync.list_node_edges(center, cursor=page.next_cursor, limit=1)
                hits = await client.find_precedents(policy_id="cap")
                assert hits == sync.find_precedents(policy_id="cap") and len(hits) == 3
                health = await client.get_projection_health(include_digests=True)
                assert health == sync.get_projection_health(include_digests=True)
                assert health.event_count == 9 and health.digests == await client.digests()

    try:
        asyncio.run(scenario())
    finally:
        server.process.terminate()
        server.process.wait(30)


def test_async_buffered_appends_survive_a_server_restart(tmp_path: Path) -> None:
    server = start_server(str(tmp_path / "async-buffered.db"))
    process = server.process

    async def scenario() -> None:
        nonlocal process
        client = AsyncClient(
            server.url,
            server.keys["writer"],
            buffered=True,
            spool_path=str(tmp_path / "async-spool.db"),
            max_batch=10,
            retry=RetryPolicy(attempts=3, base=0.05, cap=0.2),
        )
        async with client:
            traces = [
                await client.start_trace(
                    "w", f"t{i}", {"entity_type": "a", "entity_id": str(i)}, SOURCE, ACTOR
                )
                for i in range(4)
            ]
            receipts = []
            for round_ in range(15):
                if round_ == 5:
                    assert await client.flush(timeout=60)  # the first rounds are stored
                    kill(process)
                for trace_id in traces:
                    receipts.append(
                        await client.observe_entity(
                            trace_id,
                            {"entity_type": "e", "entity_id": str(round_)},
                            "related",
                            [],
                            SOURCE,
                            ACTOR,
                        )
                    )
            assert all(isinstance(r, SpooledEvent) for r in receipts)
            assert await client.wait_spooled(timeout=30)
            assert client.pending() > 0  # the server is down: events wait on disk
            process = restart(server)
            assert await client.flush(timeout=60)
            assert client.pending() == 0 and client.delivery_errors == []
            for trace_id in traces:
                events = await client.get_trace_events(trace_id)
                assert [e.trace_seq for e in events] == list(range(16))
                mine = [r for r in receipts if r.trace_id == trace_id]
                assert [e.event_id for e in events[1:]] == [r.event_id for r in mine]

    try:
        asyncio.run(scenario())
    finally:
        process.terminate()
        process.wait(30)


def test_async_stream_resumes_after_a_server_restart(tmp_path: Path) -> None:
    server = start_server(str(tmp_path / "async-stream.db"))
    process = server.process
    writer = Client(server.url, server.keys["writer"])
    entity = {"entity_type": "a", "entity_id": "1"}

    def observe(trace_id: str, n: int) -> None:
        writer.observe_entity(
            trace_id,
            {"entity_type": "e", "entity_id": str(n)},
            "r",
            [],
            *(
                SOURCE,
                ACTOR,
            ),
        )

    async def scenario() -> None:
        nonlocal process
        retry = RetryPolicy(attempts=10, base=0.05, cap=0.5)
        async with AsyncClient(server.url, server.keys["reader"], retry=retry) as client:
            stream = client.stream(after=0)
            trace_id = writer.start_trace("w", "t", entity, SOURCE, ACTOR)
            first = await anext(stream)
            assert first.log_seq == 1 and first.event_type == "TraceStarted"
            observe(trace_id, 1)
            second = await anext(stream)
            kill(process)
            process = await asyncio.to_thread(restart, server)
            for n in range(2, 4):
                observe(trace_id, n)
            after = [await anext(stream), await anext(stream)]
            seen = [first, second, *after]
            assert [e.log_seq for e in seen] == [1, 2, 3, 4]  # none lost, none twice
            assert seen == writer.get_trace_events(trace_id)
            await stream.aclose()

    try:
        asyncio.run(scenario())
    finally:
        writer.close()
        process.terminate()
        process.wait(30)
