"""The SDK against a real ``decisiongraph serve`` on loopback."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from decisiongraph import Client
from decisiongraph.core.errors import NotFoundError
from decisiongraph.query.traces import TraceSummary
from decisiongraph.sdk.retry import RetryPolicy
from decisiongraph.sdk.spool import Spool
from tests.runtime.support import ROOT
from tests.sdk.support import kill, restart
from tests.service.conftest import Server, start_server

EXAMPLE = ROOT / "examples" / "discount_agent.py"
spec = importlib.util.spec_from_file_location("discount_agent", EXAMPLE)
assert spec is not None and spec.loader is not None
agent = importlib.util.module_from_spec(spec)
sys.modules["discount_agent"] = agent  # dataclasses look their module up
spec.loader.exec_module(agent)


def run_agent(dg: Any) -> list[str]:
    deals = [agent.Deal("d1", "acme", 8), agent.Deal("d2", "acme", 18), agent.Deal("d3", "x", 40)]
    return [agent.decide(dg, deal) for deal in deals]


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Any:
    server = start_server(str(tmp_path / "sdk.db"))
    yield server
    server.process.terminate()
    server.process.wait(30)


def client_for(server: Server, **options: Any) -> Client:
    return Client(server.url, server.keys["writer"], **options)


def test_typed_reads_pages_errors_and_the_stream(sqlite_server: Server) -> None:
    with client_for(sqlite_server) as client:
        assert client.ready()
        assert run_agent(client) == ["success", "success", "failure"]
        head = client.projection_statuses()[0].head
        assert client.wait_for(head, timeout=30)
        every = list(client.iter_traces(page_size=1))  # three pages
        assert len(every) == 3 and all(isinstance(t, TraceSummary) for t in every)
        assert every == [client.get_trace_summary(t.trace_id) for t in every]
        first = client.list_traces(limit=2)
        assert len(first.traces) == 2 and first.next_cursor is not None
        rest = client.list_traces(limit=2, cursor=first.next_cursor)
        assert first.traces + rest.traces == every and rest.next_cursor is None
        assert [t.title for t in client.iter_traces(outcome="failure")] == ["40% for d3"]
        with pytest.raises(NotFoundError) as caught:
            client.get_trace_summary("no-such-trace")
        assert caught.value.request_id and caught.value.status == 404
        stream = client.stream(after=head - 2)
        streamed = [next(stream), next(stream)]
        stored = client.get_trace_events(streamed[0].trace_id)
        assert streamed == [e for e in stored if e.log_seq > head - 2]  # whole StoredEvents
        assert [e.log_seq for e in streamed] == [head - 1, head]


def test_example_runs_against_the_server(sqlite_server: Server) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(EXAMPLE),
            sqlite_server.url,
            "--api-key",
            sqlite_server.keys["writer"],
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "d3: 40% -> failure" in done.stdout
    assert "precedents for acme under discount_cap: ['18% for d2', '8% for d1']" in done.stdout


def test_example_runs_embedded() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "precedents for acme" in done.stdout


def test_buffered_appends_survive_a_server_restart(tmp_path: Path) -> None:
    db = str(tmp_path / "buffered.db")
    server = start_server(db)
    client = client_for(
        server,
        buffered=True,
        spool_path=str(tmp_path / "spool.db"),
        retry=RetryPolicy(attempts=3, base=0.05, cap=0.2),
        max_batch=20,
    )
    source, actor = agent.AGENT, agent.BOT
    traces = [
        client.start_trace("w", f"t{i}", {"entity_type": "a", "entity_id": str(i)}, source, actor)
        for i in range(5)
    ]
    for round_ in range(20):
        if round_ == 8:
            kill(server.process)
        for trace_id in traces:
            client.observe_entity(
                trace_id,
                {"entity_type": "e", "entity_id": str(round_)},
                "related",
                [],
                source,
                actor,
            )
    assert client.pending() > 0  # the server is down: events wait on disk
    assert not client.ready()
    process = restart(server)
    try:
        assert client.flush(timeout=60)
        for trace_id in traces:
            events = client.get_trace_events(trace_id)
            assert [e.trace_seq for e in events] == list(range(21))  # each once, in order
        assert client.delivery_errors == []
    finally:
        client.close()
        process.terminate()
        process.wait(30)


def test_spooled_events_outlive_the_agent_process(tmp_path: Path) -> None:
    db = str(tmp_path / "later.db")
    server = start_server(db)
    key = server.keys["writer"]
    server.process.terminate()
    server.process.wait(30)
    spool = str(tmp_path / "agent-spool.db")
    script = (
        "import os, sys\n"
        "from decisiongraph import Client\n"
        f"c = Client({server.url!r}, {key!r}, buffered=True, spool_path={spool!r})\n"
        "s = {'producer_id': 'p', 'system': 's'}; a = {'actor_type': 'agent', 'actor_id': 'x'}\n"
        "e = {'entity_type': 'a', 'entity_id': '1'}\n"
        "t = c.start_trace('w', 'title', e, s, a, trace_id='tr1')\n"
        "for n in range(30):\n"
        "    src = {'system': 's', 'object_type': 'o', 'object_id': str(n)}\n"
        "    c.observe_input(t, f'i{n}', src, [], s, a)\n"
        "assert c.wait_spooled(timeout=30)\n"
        "print('spooled', flush=True)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert "spooled" in done.stdout and done.returncode == -9
    source = {"producer_id": "p", "system": "s"}
    actor = {"actor_type": "agent", "actor_id": "x"}
    later = Client(server.url, key, buffered=True, spool_path=spool)
    process = None
    try:
        # The server is still down: the new process numbers the trace after
        # what the killed one spooled, without asking the server.
        origin = {"system": "s", "object_type": "o", "object_id": "late"}
        receipt = later.observe_input("tr1", "late", origin, [], source, actor)
        assert receipt.trace_seq == 31
        assert later.finish_trace("tr1", "success", source, actor).trace_seq == 32
        process = restart(server)
        assert later.flush(timeout=60)
        events = later.get_trace_events("tr1")
        assert [e.trace_seq for e in events] == list(range(33))
        assert events[-1].event_type == "TraceFinished"
    finally:
        later.close()
        if process is not None:
            process.terminate()
            process.wait(30)


def test_retries_on_429_and_503_with_a_real_server(tmp_path: Path) -> None:
    server = start_server(str(tmp_path / "limits.db"), "--no-workers", env={"DG_RATE_READ": "1"})
    try:
        with client_for(server, retry=RetryPolicy(attempts=8, base=0.05, cap=1.0)) as client:
            for _ in range(4):  # burst 2 at 1 req/s: later calls get 429 and are retried
                assert client.projection_statuses()[0].tenant_id == "default"
            trace_id = client.start_trace(
                "w", "t", {"entity_type": "a", "entity_id": "1"}, agent.AGENT, agent.BOT
            )
            worker = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "decisiongraph",
                    "worker",
                    server.db,
                    "--poll-interval",
                    "0.5",
                ],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                # Projections lag (no workers in the server): 503 with Retry-After, retried.
                assert client.get_trace_summary(trace_id).trace_id == trace_id
            finally:
                worker.terminate()
                worker.wait(30)
    finally:
        server.process.terminate()
        server.process.wait(30)


def test_a_refused_event_does_not_hold_up_the_others(sqlite_server: Server, tmp_path: Path) -> None:
    """The server refuses a whole batch for one bad event: the batcher isolates it."""
    source, actor = agent.AGENT, agent.BOT
    spool_path = str(tmp_path / "spool.db")
    with client_for(sqlite_server, buffered=True, spool_path=spool_path, max_batch=50) as client:
        bad = client.start_trace("w", "bad", {"entity_type": "a", "entity_id": "1"}, source, actor)
        good = client.start_trace("w", "ok", {"entity_type": "a", "entity_id": "2"}, source, actor)
        client.append_event(bad, "PolicyEvaluated", {"bogus": True}, source, actor)
        client.append_event(bad, "PolicyEvaluated", {"not_json": {1, 2}}, source, actor)
        for n in range(10):
            client.observe_entity(
                good,
                {"entity_type": "e", "entity_id": str(n)},
                "r",
                [],
                *(
                    source,
                    actor,
                ),
            )
        assert client.flush(timeout=60)
        assert [e.trace_seq for e in client.get_trace_events(good)] == list(range(11))
        assert [e.event_type for e in client.get_trace_events(bad)] == ["TraceStarted"]
        errors = client.delivery_errors
        assert len(errors) == 2
        assert any("not JSON serializable" in e for e in errors)
        assert any("DG_ERR_SCHEMA_VIOLATION" in e for e in errors)
    spool = Spool(spool_path)
    try:
        assert spool.pending() == 0
        refused = spool.rejected()
        assert len(refused) == 2
        assert any('"bogus":true' in body for body, _ in refused)
    finally:
        spool.close()


def test_interpreter_exit_spools_what_is_still_queued(tmp_path: Path) -> None:
    """No close() and the server away: the atexit hook still puts every event on disk."""
    db = str(tmp_path / "exit.db")
    server = start_server(db)
    key = server.keys["writer"]
    server.process.terminate()
    server.process.wait(30)
    spool = str(tmp_path / "exit-spool.db")
    script = (
        "from decisiongraph import Client\n"
        f"c = Client({server.url!r}, {key!r}, buffered=True, spool_path={spool!r},"
        " close_timeout=0.2)\n"
        "s = {'producer_id': 'p', 'system': 's'}; a = {'actor_type': 'agent', 'actor_id': 'x'}\n"
        "t = c.start_trace('w', 'title', {'entity_type': 'a', 'entity_id': '1'}, s, a,"
        " trace_id='tr-exit')\n"
        "for n in range(200):\n"
        "    c.observe_entity(t, {'entity_type': 'e', 'entity_id': str(n)}, 'r', [], s, a)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    left = Spool(spool)
    try:
        assert left.pending() == 201
    finally:
        left.close()
    process = restart(server)
    try:
        with Client(server.url, key, buffered=True, spool_path=spool) as later:
            assert later.flush(timeout=60)
            assert [e.trace_seq for e in later.get_trace_events("tr-exit")] == list(range(201))
    finally:
        process.terminate()
        process.wait(30)


def test_stream_resumes_after_a_server_restart(tmp_path: Path) -> None:
    server = start_server(str(tmp_path / "stream.db"))
    source, actor = agent.AGENT, agent.BOT
    process = server.process
    try:
        with client_for(server, retry=RetryPolicy(attempts=10, base=0.05, cap=0.5)) as client:
            stream = client.stream(after=0)
            trace_id = client.start_trace(
                "w", "t", {"entity_type": "a", "entity_id": "1"}, source, actor
            )
            for n in range(2):
                client.observe_entity(
                    trace_id, {"entity_type": "e", "entity_id": str(n)}, "r", [], source, actor
                )
            before = [next(stream) for _ in range(3)]
            kill(process)
            process = restart(server)
            for n in range(2, 4):
                client.observe_entity(
                    trace_id, {"entity_type": "e", "entity_id": str(n)}, "r", [], source, actor
                )
            after = [next(stream) for _ in range(2)]
            assert [e.log_seq for e in before + after] == [1, 2, 3, 4, 5]  # none lost, none twice
            assert before + after == client.get_trace_events(trace_id)
    finally:
        process.terminate()
        process.wait(30)
