"""Fixes from an audit of the HTTP API, each over real HTTP on both backends.

Trace ids holding "/" or made of dots are addressable; forged cursors are
400s; an unreachable Redis is a 503 and not ready; a revoked key's stream
ends; a stream cannot resume past the head; admin bodies refuse unknown
fields and say when they are not JSON; audit entries say who asked and
where the action stood; HEAD on the health probes.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from decisiongraph import connect
from decisiongraph.core.errors import InvalidArgumentError
from decisiongraph.query.traces import list_traces
from decisiongraph.runtime.process import open_runtime_store
from decisiongraph.sdk.calls import _quoted
from decisiongraph.seed import generate_events
from tests.runtime.support import open_sql, wait_until
from tests.service.conftest import Server, start_server
from tests.service.test_bad_requests import error_of

INVALID = "DG_ERR_INVALID_ARGUMENT"


def trace_started(trace_id: str) -> dict[str, Any]:
    """A one-event trace (its TraceStarted) under ``trace_id``."""
    event: dict[str, Any] = next(iter(generate_events(1, 1)))
    event["trace_id"] = trace_id
    event["event_id"] = str(uuid.uuid4())
    event["idempotency_key"] = f"started:{trace_id}"
    return event


def cursor_of(document: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode()


# -- 1. trace ids with "/" and dots ---------------------------------------------
ODD_IDS = ("zz", "zz/events", "a/b", "..", ".", "x/y/events", "events")


def test_any_stored_trace_id_reads_back(server: Server) -> None:
    with server.client() as client:
        for trace_id in ODD_IDS:
            posted = client.post("/api/v1/events", json=trace_started(trace_id))
            assert posted.status_code == 200, posted.text

        def summary(path: str) -> httpx.Response:
            found: list[httpx.Response] = []

            def current() -> bool:  # the workers (PostgreSQL) project in the background
                found.append(client.get(path))
                return found[-1].status_code != 503

            wait_until(current, what=f"a summary at {path}", detail=lambda: found[-1].text)
            return found[-1]

        for trace_id in ODD_IDS:
            encoded = _quoted(trace_id)  # what the SDK sends
            got = summary(f"/api/v1/traces/{encoded}")
            assert got.status_code == 200, (trace_id, got.text)
            assert got.json()["trace_id"] == trace_id
            events = client.get(f"/api/v1/traces/{encoded}/events")
            assert events.status_code == 200, (trace_id, events.text)
            assert [e["trace_id"] for e in events.json()["events"]] == [trace_id]
        # The audit's case: an encoded slash is part of the id, never a route separator.
        assert summary("/api/v1/traces/zz%2Fevents").json()["trace_id"] == "zz/events"
        # Unencoded slashes still work for ids that do not end in "/events".
        assert summary("/api/v1/traces/a/b").json()["trace_id"] == "a/b"
        plain = client.get("/api/v1/traces/a/b/events").json()["events"]
        assert [e["trace_id"] for e in plain] == ["a/b"]
        error_of(summary(f"/api/v1/traces/{_quoted('a/b/c')}"), 404, "DG_ERR_NOT_FOUND")
    remote = connect(server.url, api_key=server.keys["writer"])  # the SDK quotes ids itself
    try:
        for trace_id in ODD_IDS:
            assert remote.get_trace_summary(trace_id).trace_id == trace_id
            assert [e.trace_id for e in remote.get_trace_events(trace_id)] == [trace_id]
    finally:
        remote.close()
    spec = httpx.get(f"{server.url}/openapi.json").json()["paths"]
    assert {"/api/v1/traces/{trace_id}", "/api/v1/traces/{trace_id}/events"} <= set(spec)


# -- 2. cursors -----------------------------------------------------------------
FORGED_CURSORS = (
    cursor_of([10**30, "x"]),
    cursor_of([-1, "x"]),
    cursor_of([2**63, "x"]),
    cursor_of([1, 2]),
    cursor_of([True, "x"]),
    cursor_of([1, "x", 3]),
    cursor_of({"a": 1, "b": 2}),
    cursor_of([1, "x\u0000"]),
    cursor_of([5, "\ud800"]),  # a lone surrogate no backend can compare
    base64.urlsafe_b64encode(b"[" * 50_000).decode(),
)


def test_forged_trace_cursors_are_refused(server: Server) -> None:
    with server.client() as client:
        for cursor in FORGED_CURSORS[:-1]:  # the last is too long for a URL
            refused = client.get("/api/v1/traces", params={"cursor": cursor})
            assert error_of(refused, 400, INVALID)["message"] == "Malformed cursor"
        good = client.get("/api/v1/traces", params={"cursor": cursor_of([2**63 - 1, "x"])})
        assert good.status_code == 200, good.text


def test_forged_trace_cursors_are_refused_embedded(tmp_path: Path) -> None:
    store = open_sql(str(tmp_path / "embedded.db"))
    try:
        for cursor in FORGED_CURSORS:
            with pytest.raises(InvalidArgumentError, match="Malformed cursor"):
                list_traces(store, "default", cursor=cursor)
    finally:
        store.close()


# -- 3. an unreachable Redis ----------------------------------------------------
def test_an_unreachable_redis_is_a_503_and_not_ready(tmp_path: Path) -> None:
    running = start_server(
        str(tmp_path / "redis.db"),
        env={"DG_REDIS_URL": "redis://127.0.0.1:1/0"},  # nothing listens on port 1
        ready_path="/healthz",
    )
    try:
        error_of(httpx.get(f"{running.url}/readyz"), 503, "DG_ERR_STORAGE")
        with running.client() as client:
            for refused in (client.get("/api/v1/traces"), client.post("/api/v1/events", json={})):
                error = error_of(refused, 503, "DG_ERR_STORAGE")
                assert "Redis" in error["message"]
                assert refused.headers["Retry-After"] == "1"
        with running.client(key="dgk_nope_nope") as stranger:  # the key comes first
            error_of(stranger.get("/api/v1/traces"), 401, "DG_ERR_UNAUTHENTICATED")
    finally:
        running.process.terminate()
        running.process.wait(30)


# -- 4 and 5. the stream --------------------------------------------------------
@dataclass
class Stream:
    """An SSE stream read in a thread: what arrived, and whether it ended."""

    ids: list[int] = field(default_factory=list)
    named: list[str] = field(default_factory=list)
    opened: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)


@contextmanager
def streaming(server: Server, key: str) -> Iterator[Stream]:
    seen = Stream()

    def run() -> None:
        try:
            with (
                httpx.Client(
                    base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=None
                ) as client,
                client.stream("GET", "/api/v1/stream") as response,
            ):
                assert response.status_code == 200
                for line in response.iter_lines():
                    if line.startswith("retry:"):
                        seen.opened.set()
                    elif line.startswith("id: "):
                        seen.ids.append(int(line[4:]))
                    elif line.startswith("event: "):
                        seen.named.append(line[7:])
        finally:
            seen.ended.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert seen.opened.wait(10), "stream did not open"
    yield seen


def new_reader(server: Server, name: str) -> tuple[str, str]:
    """A fresh events:read key (its id, the key) on the server's database."""
    store = open_runtime_store(server.db)
    try:
        _, key = store.create_account(name, ["default"], ["events:read"])
    finally:
        store.close()
    return key.split("_", 2)[1], key


def test_a_revoked_keys_stream_ends_before_the_next_event(server: Server) -> None:
    key_id, key = new_reader(server, "streamer")
    with server.client() as writer:
        assert writer.post("/api/v1/events", json=trace_started("before")).status_code == 200
        with streaming(server, key) as stream:
            store = open_runtime_store(server.db)
            try:
                store.revoke_key(key_id)
            finally:
                store.close()
            assert writer.post("/api/v1/events", json=trace_started("after")).status_code == 200
            wait_until(stream.ended.is_set, what="the revoked key's stream to end")
        assert stream.ids == []  # the stream started at the head: "after" was never sent
        assert "stream_closed" in stream.named
    error_of(
        httpx.get(f"{server.url}/api/v1/stream", headers={"Authorization": f"Bearer {key}"}),
        401,
        "DG_ERR_UNAUTHENTICATED",
    )


def test_an_idle_stream_ends_when_its_account_is_disabled(server: Server) -> None:
    _, key = new_reader(server, "idler")
    with streaming(server, key) as stream:
        store = open_runtime_store(server.db)
        try:
            store.disable_account("idler")
        finally:
            store.close()
        wait_until(stream.ended.is_set, what="the disabled account's idle stream to end")
    assert "stream_closed" in stream.named


def test_a_stream_cannot_resume_past_the_head(server: Server) -> None:
    with server.client() as client:
        error_of(client.get("/api/v1/stream", headers={"Last-Event-ID": "1"}), 400, INVALID)
        error_of(client.get("/api/v1/stream", params={"after": 1}), 400, INVALID)
        assert client.post("/api/v1/events", json=trace_started("t")).status_code == 200
        refused = client.get("/api/v1/stream", headers={"Last-Event-ID": "2"})
        assert error_of(refused, 400, INVALID)["details"] == {"position": 2, "head": 1}
        with client.stream("GET", "/api/v1/stream", headers={"Last-Event-ID": "1"}) as at_head:
            assert at_head.status_code == 200


# -- 6. admin and event bodies --------------------------------------------------
def test_admin_bodies_refuse_unknown_fields_and_non_json(server: Server) -> None:
    with server.client("operator") as operator:
        typo = operator.post("/api/v1/admin/replay", json={"reason": "x", "to_logseq": 5})
        problems = error_of(typo, 400, INVALID)["details"]["problems"]
        assert [p["location"] for p in problems] == ["body.to_logseq"]
        for content_type in ("application/x-www-form-urlencoded", "text/plain", None):
            headers = {} if content_type is None else {"Content-Type": content_type}
            untyped = operator.post(
                "/api/v1/admin/replay", content=b'{"reason": "x"}', headers=headers
            )
            error = error_of(untyped, 400, INVALID)
            assert "Content-Type: application/json" in error["message"]
            assert error["details"] == {"content_type": content_type}
        typed = operator.post(
            "/api/v1/admin/replay",
            content=b'{"reason": "x"}',
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
        assert typed.status_code == 200, typed.text
        entries = operator.get("/api/v1/admin/audit").json()["entries"]
        assert [e["action"] for e in entries] == ["projection.replay"]  # only the good one


def test_a_bare_array_is_not_a_batch(server: Server) -> None:
    with server.client() as client:
        refused = client.post("/api/v1/events", json=[trace_started("t")])
        message = error_of(refused, 400, INVALID)["message"]
        assert '{"events": [...]}' in message
        error_of(client.post("/api/v1/events", json="text"), 400, INVALID)


# -- 7. audit details -----------------------------------------------------------
def test_audit_entries_say_who_asked_and_where_the_action_stood(server: Server) -> None:
    operator_key_id = server.keys["operator_writer"].split("_", 2)[1]
    with server.client("operator_writer") as operator:
        for trace_id in ("t1", "t2"):
            assert operator.post("/api/v1/events", json=trace_started(trace_id)).status_code == 200
        replayed = operator.post(
            "/api/v1/admin/replay",
            json={"reason": "check", "to_log_seq": 1},
            headers={"X-Request-ID": "replay-req-1"},
        )
        assert replayed.status_code == 200, replayed.text
        rebuilt = operator.post(
            "/api/v1/admin/rebuild",
            json={"projection": "trace_summary", "reason": "drill", "confirm": "trace_summary"},
            headers={"X-Request-ID": "rebuild-req-1"},
        )
        assert rebuilt.status_code == 200, rebuilt.text
        entries = operator.get("/api/v1/admin/audit").json()["entries"]
    done, rebuild, replay = entries[:3]
    assert replay["action"] == "projection.replay"
    assert replay["details"] == {
        "request_id": "replay-req-1",
        "key_id": operator_key_id,
        "to_log_seq": 1,
        "head": 2,
    }
    assert rebuild["action"] == "projection.rebuild"
    assert rebuild["details"] == {
        "request_id": "rebuild-req-1",
        "key_id": operator_key_id,
        "projection": "trace_summary",
        "head": 2,
    }
    assert done["action"] == "projection.rebuild.done"
    assert done["details"] == {
        "request_id": "rebuild-req-1",
        "key_id": operator_key_id,
        "projection": "trace_summary",
        "cursor": rebuilt.json()["cursor"],
    }
    assert rebuilt.json()["cursor"] == 2
    assert server.keys["operator_writer"] not in json.dumps(entries)  # never the key


# -- 8. HEAD on the probes ------------------------------------------------------
def test_health_probes_answer_head(server: Server) -> None:
    for path in ("/healthz", "/readyz"):
        probed = httpx.head(f"{server.url}{path}")
        assert probed.status_code == 200, path
        assert probed.content == b""
