"""SDK fixes from an audit, each against a real server on loopback.

Stale trace positions after another writer, refused buffered events that
held up their trace, ``trace()`` masking the caller's exception, retried
operator actions, untyped transport errors, ``connect`` guessing, and the
embedded/remote differences on empty appends and audit limits.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from decisiongraph import (
    ActorRef,
    AsyncClient,
    Client,
    DecisionGraph,
    EntityRef,
    PolicyRef,
    SourceRef,
    StoredEvent,
    connect,
)
from decisiongraph.core.errors import (
    InvalidArgumentError,
    StorageError,
)
from decisiongraph.sdk.retry import RetryPolicy
from tests.runtime.support import wait_until
from tests.service.conftest import Server, free_port, start_server

AGENT = SourceRef("audit_agent", "crm")
OTHER = SourceRef("other_agent", "crm")
BOT = ActorRef("agent", "bot")
ACME = EntityRef("account", "acme", "crm")
POLICY = PolicyRef("discount_cap", "3")
FAST = RetryPolicy(attempts=3, base=0.001, cap=0.001)


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[Server]:
    server = start_server(str(tmp_path / "sdk.db"))
    yield server
    server.process.terminate()
    server.process.wait(30)


class Forwarded(httpx.BaseTransport):
    """A real transport that counts what reached the server and can lose the
    answer afterwards (the request ran; the caller sees a read timeout)."""

    def __init__(self, lose_answers_to: str | None = None) -> None:
        self._real = httpx.HTTPTransport()
        self._lose = lose_answers_to
        self.sent: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._real.handle_request(request)
        self.sent.append(f"{request.method} {request.url.path}")
        if self._lose is not None and request.url.path.startswith(self._lose):
            response.read()
            response.close()
            raise httpx.ReadTimeout("answer lost", request=request)
        return response

    def close(self) -> None:
        self._real.close()


def trace_shape(client: Client, trace_id: str) -> list[tuple[int, str, str]]:
    return [
        (e.trace_seq, e.event_type, e.source.producer_id) for e in client.get_trace_events(trace_id)
    ]


# -- 1. a stale remembered position is re-read, never double-appended ----------------
def test_another_writer_does_not_wedge_the_remote_client(server: Server) -> None:
    with (
        Client(server.url, server.keys["writer"]) as mine,
        Client(server.url, server.keys["writer"]) as theirs,
    ):
        trace = mine.start_trace("wf", "shared", ACME, AGENT, BOT)
        mine.evaluate_policy(trace, POLICY, ["x"], "allow", AGENT, BOT)  # remembered: 2 next
        # Same producer and type at 2: the default key collides (IDEMPOTENCY_CONFLICT).
        theirs.evaluate_policy(trace, POLICY, ["y"], "deny", AGENT, BOT)
        mine.evaluate_policy(trace, POLICY, ["z"], "allow", AGENT, BOT)
        # Another producer at 4: the sequence check refuses the stale 4.
        theirs.observe_entity(trace, ACME, "primary", [], OTHER, BOT)
        again = mine.evaluate_policy(trace, POLICY, ["w"], "allow", AGENT, BOT)
        assert again.trace_seq == 5
        # A true retry (the same key) stays a no-op, whatever the position.
        first = mine.commit_action(trace, "a1", "success", AGENT, BOT, idempotency_key="k1")
        retry = mine.commit_action(trace, "a1", "success", AGENT, BOT, idempotency_key="k1")
        assert isinstance(first, StoredEvent) and isinstance(retry, StoredEvent)
        assert retry.event_id == first.event_id and retry.log_seq == first.log_seq
        mine.finish_trace(trace, "success", AGENT, BOT)
        assert [seq for seq, _, _ in trace_shape(mine, trace)] == list(range(8))
        assert [p for _, _, p in trace_shape(mine, trace)].count("other_agent") == 1


def test_another_writer_does_not_wedge_the_async_client(sqlite_server: Server) -> None:
    async def run() -> list[int]:
        async with AsyncClient(sqlite_server.url, sqlite_server.keys["writer"]) as mine:
            with Client(sqlite_server.url, sqlite_server.keys["writer"]) as theirs:
                trace = await mine.start_trace("wf", "shared", ACME, AGENT, BOT)
                theirs.evaluate_policy(trace, POLICY, ["y"], "deny", AGENT, BOT)
                await mine.evaluate_policy(trace, POLICY, ["z"], "allow", AGENT, BOT)
                theirs.observe_entity(trace, ACME, "primary", [], OTHER, BOT)
                await mine.finish_trace(trace, "success", AGENT, BOT)
            return [e.trace_seq for e in await mine.get_trace_events(trace)]

    assert asyncio.run(run()) == [0, 1, 2, 3, 4]


# -- 2. a refused buffered event takes no position -------------------------------------
def test_a_refused_buffered_event_does_not_hold_up_its_trace(
    sqlite_server: Server, tmp_path: Path
) -> None:
    spool = tmp_path / "spool.db"
    with Client(
        sqlite_server.url, sqlite_server.keys["writer"], buffered=True, spool_path=str(spool)
    ) as client:
        trace = client.start_trace("wf", "buffered", ACME, AGENT, BOT)
        client.evaluate_policy(trace, POLICY, ["x"], "require_exception", AGENT, BOT)
        bad = client.request_exception(trace, "e1", POLICY, "password=hunter2", AGENT, BOT)
        client.request_exception(trace, "e2", POLICY, "strategic", AGENT, BOT)
        client.finish_trace(trace, "success", AGENT, BOT)
        assert client.flush(30)
        assert client.pending() == 0
        errors = client.delivery_errors
        assert len(errors) == 1
        assert bad.event_id in errors[0] and trace in errors[0]
        assert errors[0].startswith("DG_ERR_PII_POLICY_VIOLATION: ")
        assert errors[0].count("DG_ERR_PII_POLICY_VIOLATION") == 1
        stored = client.get_trace_events(trace)
        assert [(e.trace_seq, e.event_type) for e in stored] == [
            (0, "TraceStarted"),
            (1, "PolicyEvaluated"),
            (2, "ExceptionRequested"),
            (3, "TraceFinished"),
        ]
        assert stored[2].payload["exception_id"] == "e2"
        assert stored[2].idempotency_key == f"ExceptionRequested:{trace}:2"
        # The trace goes on in the client's numbering, still moved past the gap.
        later = client.start_trace("wf", "next", ACME, AGENT, BOT)
        client.finish_trace(later, "success", AGENT, BOT)
        assert client.flush(30) and len(client.delivery_errors) == 1
        assert client.delivery_status().stalled is False
    with sqlite3.connect(spool) as db:
        (refused,) = db.execute("SELECT body, error FROM refused").fetchall()
    assert json.loads(refused[0])["event_id"] == bad.event_id


class GoesDown(httpx.BaseTransport):
    """Forwards to the real server until it refuses the one-event batch
    holding ``poison``; from then on nothing connects (the server is gone)."""

    def __init__(self, poison: bytes) -> None:
        self._real = httpx.HTTPTransport()
        self._poison = poison
        self.down = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("server gone", request=request)
        body = request.read()
        response = self._real.handle_request(request)
        if self._poison in body and body.count(b'"event_id"') == 1:
            response.read()
            self.down = response.status_code >= 400
        return response

    def close(self) -> None:
        self._real.close()


def test_refused_positions_outlive_the_agent_process(sqlite_server: Server, tmp_path: Path) -> None:
    """The events after a refused one wait in the spool when the agent stops;
    the next client on the spool sends them moved down exactly as the first
    would have."""
    spool = str(tmp_path / "spool.db")
    key = sqlite_server.keys["writer"]
    gate = GoesDown(b"hunter2")
    first = Client(
        sqlite_server.url,
        key,
        buffered=True,
        spool_path=spool,
        transport=gate,
        retry=FAST,
        close_timeout=0.1,
    )
    trace = first.start_trace("wf", "crash", ACME, AGENT, BOT)
    first.evaluate_policy(trace, POLICY, ["x"], "require_exception", AGENT, BOT)
    first.request_exception(trace, "e1", POLICY, "password=hunter2", AGENT, BOT)
    first.evaluate_policy(trace, POLICY, ["y"], "allow", AGENT, BOT)
    first.finish_trace(trace, "success", AGENT, BOT)
    wait_until(lambda: first.delivery_status().stalled, 30, "the server to go away")
    assert len(first.delivery_errors) == 1
    first.close()
    # Counted by a client that cannot deliver: a live one may have sent them
    # before it is asked (its sender starts at once).
    offline_url = f"http://127.0.0.1:{free_port()}"
    with Client(
        offline_url, key, buffered=True, spool_path=spool, retry=FAST, close_timeout=0.1
    ) as offline:
        assert offline.pending() == 2
    with Client(sqlite_server.url, key, buffered=True, spool_path=spool) as second:
        assert second.flush(30) and second.delivery_errors == []
        stored = second.get_trace_events(trace)
    assert [(e.trace_seq, e.event_type) for e in stored] == [
        (0, "TraceStarted"),
        (1, "PolicyEvaluated"),
        (2, "PolicyEvaluated"),
        (3, "TraceFinished"),
    ]


def test_a_stalled_delivery_is_visible(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    client = Client(url, "dgk_unused", buffered=True, retry=FAST, close_timeout=0.1)
    try:
        assert client.delivery_status().stalled is False
        client.start_trace("wf", "down", ACME, AGENT, BOT)
        wait_until(lambda: client.delivery_status().stalled, 30, "a stall")
        status = client.delivery_status()
        assert status.pending == 1
        assert status.last_error is not None and "unreachable" in status.last_error
    finally:
        client.close()


# -- 3. trace() never masks the caller's exception --------------------------------------
def scope_checks(dg: Any, trace_ids: Iterator[str]) -> None:
    secret_trace = next(trace_ids)
    with (
        pytest.raises(RuntimeError, match="token=abc") as caught,
        dg.trace("wf", "secret", ACME, AGENT, BOT, trace_id=secret_trace),
    ):
        raise RuntimeError("login failed: token=abc password=hunter2")
    assert not getattr(caught.value, "__notes__", None)
    summary = dg.get_trace_summary(secret_trace)
    assert summary.outcome == "failure"
    finished = dg.get_trace_events(secret_trace)[-1]
    redacted = "RuntimeError: login failed: [redacted] [redacted]"  # values too
    assert finished.payload["summary"] == redacted

    early = next(trace_ids)
    with dg.trace("wf", "early", ACME, AGENT, BOT, trace_id=early) as t:
        t.finish("blocked")
    assert dg.get_trace_events(early)[-1].payload == {"outcome": "blocked"}

    raced = next(trace_ids)
    with (
        pytest.raises(ValueError, match="mine") as raised,
        dg.trace("wf", "raced", ACME, AGENT, BOT, trace_id=raced),
    ):
        dg.finish_trace(raced, "success", AGENT, BOT)  # behind the scope's back
        raise ValueError("mine")
    (note,) = raised.value.__notes__
    assert f"trace {raced} could not be finished" in note


def test_trace_scope_keeps_the_callers_exception_embedded(tmp_path: Path) -> None:
    with DecisionGraph(str(tmp_path / "dg.db")) as dg:
        scope_checks(dg, iter(["t1", "t2", "t3"]))


def test_trace_scope_keeps_the_callers_exception_remote(sqlite_server: Server) -> None:
    with Client(sqlite_server.url, sqlite_server.keys["writer"]) as client:
        scope_checks(client, iter(["t1", "t2", "t3"]))


def test_async_trace_scope_keeps_the_callers_exception(sqlite_server: Server) -> None:
    async def run() -> None:
        async with AsyncClient(sqlite_server.url, sqlite_server.keys["writer"]) as client:
            with pytest.raises(RuntimeError, match="api_key="):
                async with client.trace("wf", "s", ACME, AGENT, BOT, trace_id="a1"):
                    raise RuntimeError("api_key=xyz")
            events = await client.get_trace_events("a1")
            assert events[-1].payload["summary"] == "RuntimeError: [redacted]"
            async with client.trace("wf", "e", ACME, AGENT, BOT, trace_id="a2") as t:
                await t.finish("blocked")
            assert (await client.get_trace_summary("a2")).outcome == "blocked"

    asyncio.run(run())


# -- 4. audited operator actions are not re-run by retries -------------------------------
def test_operator_actions_are_not_retried_once_sent(sqlite_server: Server) -> None:
    key = sqlite_server.keys["operator"]
    lossy = Forwarded(lose_answers_to="/api/v1/admin/replay")
    with Client(sqlite_server.url, key, retry=FAST, transport=lossy) as client:
        with pytest.raises(StorageError) as caught:
            client.replay("audit check")
        assert isinstance(caught.value.__cause__, httpx.ReadTimeout)
        assert lossy.sent.count("POST /api/v1/admin/replay") == 1
    with Client(sqlite_server.url, key) as client:
        replays = [a for a in client.audit_log(limit=100) if a.action == "projection.replay"]
        assert len(replays) == 1
    reads = Forwarded(lose_answers_to="/api/v1/projections")
    with Client(sqlite_server.url, key, retry=FAST, transport=reads) as client:
        with pytest.raises(StorageError):
            client.projection_statuses()  # a read is safe to repeat, and is
        assert reads.sent.count("GET /api/v1/projections") == FAST.attempts


def test_a_connect_failure_is_retried_even_for_operator_actions() -> None:
    counted = Forwarded()
    url = f"http://127.0.0.1:{free_port()}"
    with Client(url, "dgk_unused", retry=FAST, transport=counted) as client:
        with pytest.raises(StorageError) as caught:
            client.replay("never sent")
        assert isinstance(caught.value.__cause__, httpx.ConnectError)
        assert "unavailable" in caught.value.message


# -- 5. typed errors, the same argument checks on both sides ------------------------------
def test_transport_failures_are_typed_errors() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with Client(url, "dgk_unused", retry=FAST) as client:
        with pytest.raises(StorageError) as caught:
            client.get_projection_health()
        assert caught.value.code == "DG_ERR_STORAGE"
        assert isinstance(caught.value.__cause__, httpx.ConnectError)
        with pytest.raises(StorageError):
            client.start_trace("wf", "down", ACME, AGENT, BOT)

    async def run() -> None:
        async with AsyncClient(url, "dgk_unused", retry=FAST) as client:
            with pytest.raises(StorageError) as caught:
                await client.get_projection_health()
            assert isinstance(caught.value.__cause__, httpx.ConnectError)

    asyncio.run(run())


def test_wrong_argument_types_are_refused_alike(sqlite_server: Server, tmp_path: Path) -> None:
    with (
        DecisionGraph(str(tmp_path / "dg.db")) as embedded,
        Client(sqlite_server.url, sqlite_server.keys["writer"]) as remote,
    ):
        for dg in (embedded, remote):
            with pytest.raises(InvalidArgumentError, match="trace_id must be a string"):
                dg.get_trace_summary(123)  # type: ignore[arg-type]
            with pytest.raises(InvalidArgumentError, match="trace_id"):
                dg.get_trace_events(None)  # type: ignore[arg-type]
            with pytest.raises(InvalidArgumentError, match="node"):
                dg.list_node_edges(5)  # type: ignore[arg-type]


# -- 6. connect() does not guess --------------------------------------------------------
def test_connect_refuses_ambiguous_targets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidArgumentError, match=re.escape("http://127.0.0.1:8080")):
        connect("127.0.0.1:8080")
    with pytest.raises(InvalidArgumentError, match=re.escape("http://localhost:8080")):
        connect("localhost:8080")
    assert list(tmp_path.iterdir()) == []  # no SQLite file named after the address
    with pytest.raises(InvalidArgumentError, match="api_key"):
        connect("x.db", api_key="dgk_x")
    assert list(tmp_path.iterdir()) == []
    remote = connect("HTTP://127.0.0.1:9", api_key="dgk_unused")
    assert isinstance(remote, Client)
    remote.close()


# -- 7. the same answers embedded and remote ----------------------------------------------
def test_empty_appends_and_audit_limits_agree(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # an empty append asks no server
    with Client(url, "dgk_unused", retry=FAST) as remote:
        assert remote.append_events([]) == []

    async def run() -> None:
        async with AsyncClient(url, "dgk_unused", retry=FAST) as client:
            assert await client.append_events([]) == []

    asyncio.run(run())
    with DecisionGraph(str(tmp_path / "dg.db")) as embedded:
        assert embedded.append_events([]) == []
        for limit in (0, -1, 1001):
            with pytest.raises(InvalidArgumentError, match="limit"):
                embedded.audit_log(limit=limit)
        assert embedded.audit_log(limit=1000) == []
