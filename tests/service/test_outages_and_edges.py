"""Fixes from a second audit of the HTTP API, over real HTTP.

A PostgreSQL API process outlives its database connections; a stuck lock
or a full pool is a 503, never a hang or a 500; projection-backed reads
wait briefly for the workers instead of refusing under steady writes, and
refuse (503) when projections are truly behind, the trace list included;
what the service could not give back is not stored; a reused event id is
a permanent 409; malformed cursors, ids and bodies are 400s; admin bodies
are strictly typed; ``POST /events`` wants JSON; every GET answers HEAD;
``serve`` refuses bad settings and unreachable databases in one line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from typing import Any

import httpx
import psycopg
import pytest

from decisiongraph.core.validation import MAX_PAYLOAD_DEPTH
from decisiongraph.seed import generate_events
from tests.runtime.support import ROOT, wait_until
from tests.service.conftest import Server, serving, start_server
from tests.service.test_bad_requests import error_of

INVALID = "DG_ERR_INVALID_ARGUMENT"


def trace_started(trace_id: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    event: dict[str, Any] = next(iter(generate_events(1, 1)))
    event["trace_id"] = trace_id
    event["event_id"] = str(uuid.uuid4())
    event["idempotency_key"] = f"started:{trace_id}"
    if payload is not None:
        event["payload"] = payload
    return event


def nested(depth: int) -> dict[str, Any]:
    """A payload whose nesting is ``depth`` objects deep (itself included)."""
    inner: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 2):
        inner = {"a": inner}
    entity = {"entity_type": "account", "entity_id": "acme", "system": "crm"}
    return {"workflow": "w", "title": "t", "primary_entity": entity, "context": inner}


def stop(server: Server) -> None:
    server.process.terminate()
    server.process.wait(30)


# -- a PostgreSQL database that drops its connections -----------------------------
def test_api_processes_reconnect_after_the_database_drops_them(pg_url: str) -> None:
    with serving(pg_url) as server, server.client() as client:
        assert client.get("/api/v1/traces").status_code == 200
        name = pg_url.rsplit("/", 1)[1]
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
        seen: list[int] = []

        def served() -> bool:
            answer = client.get("/api/v1/traces")
            seen.append(answer.status_code)
            if answer.status_code == 503:
                assert answer.json()["error"]["code"] == "DG_ERR_STORAGE"
                assert answer.headers["Retry-After"] == "1"
            return answer.status_code == 200

        wait_until(served, 30, "a read served again", detail=lambda: str(seen))
        assert set(seen) <= {200, 503}, seen  # never a 500
        posted = client.post("/api/v1/events", json=trace_started("after-outage"))
        assert posted.status_code == 200, posted.text
        assert httpx.get(f"{server.url}/readyz").status_code == 200


def test_a_stuck_lock_or_a_full_pool_is_a_503_not_a_hang(pg_url: str) -> None:
    env = {"DG_STORE_POOL": "1", "DG_STORE_WAIT": "0.5", "DG_LOCK_TIMEOUT": "1"}
    server = start_server(pg_url, env=env)
    answers: list[httpx.Response] = []
    try:
        with psycopg.connect(pg_url) as locker, server.client() as client:
            locker.execute("LOCK TABLE dg_api_key IN ACCESS EXCLUSIVE MODE")
            first = threading.Thread(target=lambda: answers.append(client.get("/api/v1/traces")))
            first.start()
            with server.client() as second:  # the one connection is taken
                answers.append(second.get("/api/v1/traces"))
            first.join(30)
            locker.rollback()
        assert len(answers) == 2
        for answer in answers:
            error_of(answer, 503, "DG_ERR_STORAGE")
        with server.client() as client:
            assert client.get("/api/v1/traces").status_code == 200
    finally:
        stop(server)


# -- projection-backed reads under writes -------------------------------------------
def test_reads_wait_for_the_workers_and_refuse_projections_truly_behind(pg_url: str) -> None:
    # No worker runs: the projections stay behind whatever is appended.
    server = start_server(pg_url, env={"DG_READ_WAIT": "0.3"})
    worker = None
    try:
        with server.client() as client:
            assert client.post("/api/v1/events", json=trace_started("listed")).status_code == 200
            for path in ("/api/v1/traces", "/api/v1/traces/listed", "/api/v1/precedents"):
                error_of(client.get(path), 503, "DG_ERR_PROJECTION_OUT_OF_DATE")
            worker = subprocess.Popen(
                [sys.executable, "-m", "decisiongraph", "worker", pg_url],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            wait_until(lambda: client.get("/api/v1/traces").status_code == 200, 30, "catch-up")
            assert [t["trace_id"] for t in client.get("/api/v1/traces").json()["traces"]] == [
                "listed"
            ]
            # With a worker keeping up, a read right after an append is served:
            # it waits the moment the worker takes instead of answering 503.
            for index in range(20):
                trace = f"busy-{index}"
                assert client.post("/api/v1/events", json=trace_started(trace)).status_code == 200
                assert client.get("/api/v1/precedents").status_code == 200
                assert client.get(f"/api/v1/traces/{trace}").status_code == 200
    finally:
        stop(server)
        if worker is not None:
            worker.terminate()
            worker.wait(30)


# -- what is stored can be read back ------------------------------------------------
def test_payloads_nested_too_deep_are_refused_and_nothing_is_stored(server: Server) -> None:
    with server.client() as client:
        refused = client.post(
            "/api/v1/events", json=trace_started("deep", nested(MAX_PAYLOAD_DEPTH + 1))
        )
        assert "nested deeper" in error_of(refused, 400, INVALID)["message"]
        error_of(client.get("/api/v1/traces/deep/events"), 404, "DG_ERR_NOT_FOUND")
        kept = client.post("/api/v1/events", json=trace_started("deep", nested(MAX_PAYLOAD_DEPTH)))
        assert kept.status_code == 200, kept.text
        events = client.get("/api/v1/traces/deep/events")
        assert events.status_code == 200, events.text
        assert events.json()["events"][0]["payload"] == nested(MAX_PAYLOAD_DEPTH)
        # A body nested past what a parser may follow is malformed JSON, not a 500.
        deep_body = b"[" * 100_000 + b"]" * 100_000
        sent = client.post(
            "/api/v1/events", content=deep_body, headers={"content-type": "application/json"}
        )
        error_of(sent, 400, "DG_ERR_MALFORMED_JSON")


def test_a_reused_event_id_is_a_permanent_409(server: Server) -> None:
    with server.client() as client:
        first = trace_started("first")
        assert client.post("/api/v1/events", json=first).status_code == 200
        again = trace_started("second")
        again["event_id"] = first["event_id"]
        refused = client.post("/api/v1/events", json=again)
        error = error_of(refused, 409, "DG_ERR_STORAGE")  # the spec's code, not retryable
        assert error["details"]["reason"] == "duplicate_event_id"
        assert "Retry-After" not in refused.headers
        error_of(client.get("/api/v1/traces/second/events"), 404, "DG_ERR_NOT_FOUND")


# -- malformed requests ---------------------------------------------------------------
def test_non_ascii_digits_in_positions_are_refused(server: Server) -> None:
    with server.client() as client:
        edges = client.get("/api/v1/graph/edges", params={"node": "x", "cursor": "both:\u00b2:x"})
        error_of(edges, 400, INVALID)
        stream = client.get("/api/v1/stream", headers={"Last-Event-ID": "\u00b2".encode()})
        error_of(stream, 400, INVALID)


def test_admin_bodies_are_strictly_typed(server: Server) -> None:
    with server.client("operator") as client:
        for position in (True, "3", 1.0):
            body = {"reason": "audit", "to_log_seq": position}
            error_of(client.post("/api/v1/admin/replay", json=body), 400, INVALID)
        error_of(client.post("/api/v1/admin/replay", json={"reason": 7}), 400, INVALID)
        for text in (b'{"reason": NaN}', b'{"reason": "x", "to_log_seq": Infinity}'):
            sent = client.post(
                "/api/v1/admin/replay", content=text, headers={"content-type": "application/json"}
            )
            error_of(sent, 400, "DG_ERR_MALFORMED_JSON")


def test_post_events_wants_a_json_body(server: Server) -> None:
    with server.client() as client:
        text = json.dumps(trace_started("plain")).encode()
        refused = client.post(
            "/api/v1/events", content=text, headers={"content-type": "text/plain"}
        )
        assert "Content-Type" in error_of(refused, 400, INVALID)["message"]
        error_of(client.get("/api/v1/traces/plain/events"), 404, "DG_ERR_NOT_FOUND")
        sent = client.post(
            "/api/v1/events", content=text, headers={"content-type": "application/json"}
        )
        assert sent.status_code == 200, sent.text


def test_every_get_route_answers_head(server: Server) -> None:
    with server.client() as client:
        for path in ("/api/v1/traces", "/api/v1/projections", "/healthz", "/readyz", "/metrics"):
            answer = client.head(path)
            assert answer.status_code == 200, (path, answer.status_code)
            assert answer.content == b""
        assert client.head("/api/v1/nowhere").status_code == 404


def test_the_metrics_token_scheme_is_case_insensitive(tmp_path: object) -> None:
    server = start_server(str(tmp_path / "m.db"), env={"DG_METRICS_TOKEN": "s3cret"})  # type: ignore[operator]
    try:
        for scheme in ("Bearer", "bearer", "BEARER"):
            answer = httpx.get(
                f"{server.url}/metrics", headers={"Authorization": f"{scheme} s3cret"}
            )
            assert answer.status_code == 200, scheme
        assert (
            httpx.get(
                f"{server.url}/metrics", headers={"Authorization": "Bearer S3CRET"}
            ).status_code
            == 401
        )
    finally:
        stop(server)


# -- serve refuses to start ---------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        ([], {"DG_REDIS_URL": "notaurl"}, "DG_REDIS_URL is not a Redis URL"),
        (["--port", "99999"], {}, "--port must be 0 to 65535"),
        ([], {"DG_READ_WAIT": "soon"}, "DG_READ_WAIT must be a number of seconds"),
        ([], {}, "DG_ERR_STORAGE: Cannot open"),
    ],
)
def test_serve_refuses_in_one_line(
    tmp_path: object, args: list[str], env: dict[str, str], expected: str
) -> None:
    db = str(tmp_path / "s.db")  # type: ignore[operator]
    if expected.startswith("DG_ERR_STORAGE"):
        with open(db, "w") as junk:
            junk.write("not a database")
    result = subprocess.run(
        [sys.executable, "-m", "decisiongraph", "serve", "--db", db, *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
