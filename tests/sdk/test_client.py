"""The SDK against a real ``decisiongraph serve`` on loopback."""

from __future__ import annotations

import importlib.util
import itertools
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from decisiongraph import Client, DecisionGraph
from decisiongraph.core.errors import NotFoundError
from decisiongraph.sdk.retry import RetryPolicy
from tests.runtime.support import ROOT
from tests.service.conftest import Server, start_server

EXAMPLE = ROOT / "examples" / "discount_agent.py"
spec = importlib.util.spec_from_file_location("discount_agent", EXAMPLE)
assert spec is not None and spec.loader is not None
agent = importlib.util.module_from_spec(spec)
sys.modules["discount_agent"] = agent  # dataclasses look their module up
spec.loader.exec_module(agent)


def counter_ids() -> Any:
    numbers = itertools.count(1)
    return lambda: f"00000000-0000-4000-8000-{next(numbers):012d}"


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


def test_same_agent_code_gives_same_digests_embedded_and_remote(sqlite_server: Server) -> None:
    embedded = DecisionGraph(":memory:")
    embedded.new_id = counter_ids()  # type: ignore[method-assign]
    remote = client_for(sqlite_server)
    remote.new_id = counter_ids()  # type: ignore[method-assign]
    for dg in (embedded, remote):
        original = dg.append_event
        clock = itertools.count()  # the same occurred_at sequence for both

        def stamped(
            *args: Any, _original: Any = original, _times: Any = clock, **kwargs: Any
        ) -> Any:
            kwargs.setdefault("occurred_at", f"2026-01-01T00:00:{next(_times) % 60:02d}Z")
            return _original(*args, **kwargs)

        dg.append_event = stamped  # type: ignore[method-assign]
        assert run_agent(dg) == ["success", "success", "failure"]
    head = embedded.get_projection_health().event_log_last_seq
    assert remote.wait_for(head, timeout=30)
    remote_digests = remote.get_projection_health(include_digests=True)["digests"]
    assert remote_digests == embedded.digests().as_dict()
    # Reads round-trip.
    trace_id = "00000000-0000-4000-8000-000000000001"
    assert remote.get_trace(trace_id)["outcome"] == "success"
    assert [e["trace_seq"] for e in remote.get_trace_events(trace_id)] == [0, 1, 2, 3, 4, 5]
    assert len(list(remote.iter_traces(page_size=1))) == 3
    assert remote.get_context_subgraph("trace", trace_id)["edges"]
    titles = [h["title"] for h in remote.find_precedents(policy_id="discount_cap")]
    assert titles == [h.title for h in embedded.find_precedents(policy_id="discount_cap")]
    with pytest.raises(NotFoundError) as caught:
        remote.get_trace("no-such-trace")
    assert caught.value.request_id
    stream = remote.stream(after=head - 2)
    assert [next(stream)["log_seq"] for _ in range(2)] == [head - 1, head]
    remote.close()
    embedded.close()


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


def restart(server: Server, db: str, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "decisiongraph", "serve", "--db", db, "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{server.url}/readyz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "server did not come back"
        time.sleep(0.05)


def test_buffered_appends_survive_a_server_restart(tmp_path: Path) -> None:
    db = str(tmp_path / "buffered.db")
    server = start_server(db)
    port = int(server.url.rsplit(":", 1)[1])
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
            server.process.send_signal(signal.SIGKILL)
            server.process.wait(10)
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
    process = restart(server, db, port)
    try:
        assert client.flush(timeout=60)
        for trace_id in traces:
            events = client.get_trace_events(trace_id)
            assert [e["trace_seq"] for e in events] == list(range(21))  # each once, in order
        assert client.delivery_errors == []
    finally:
        client.close()
        process.terminate()
        process.wait(30)


def test_spooled_events_outlive_the_agent_process(tmp_path: Path) -> None:
    db = str(tmp_path / "later.db")
    server = start_server(db)
    port = int(server.url.rsplit(":", 1)[1])
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
        "print('spooled', flush=True)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert "spooled" in done.stdout and done.returncode == -9
    process = restart(server, db, port)
    try:
        with Client(server.url, key, buffered=True, spool_path=spool) as later:
            assert later.flush(timeout=60)
            events = later.get_trace_events("tr1")
            assert [e["trace_seq"] for e in events] == list(range(31))
    finally:
        process.terminate()
        process.wait(30)


def test_retries_on_429_and_503_with_a_real_server(tmp_path: Path) -> None:
    server = start_server(str(tmp_path / "limits.db"), "--no-workers", env={"DG_RATE_READ": "1"})
    try:
        with client_for(server, retry=RetryPolicy(attempts=8, base=0.05, cap=1.0)) as client:
            for _ in range(4):  # burst 2 at 1 req/s: later calls get 429 and are retried
                assert client.get_projection_health()["tenant_id"] == "default"
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
                assert client.get_trace(trace_id)["trace_id"] == trace_id
            finally:
                worker.terminate()
                worker.wait(30)
    finally:
        server.process.terminate()
        server.process.wait(30)
