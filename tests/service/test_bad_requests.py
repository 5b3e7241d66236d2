"""Requests no handler should ever see: each gets a 4xx in the error envelope.

Numbers beyond 64 bits, NUL characters, unknown routes, wrong methods,
missing keys before anything else is checked, non-JSON (NaN) bodies,
cursors reused for another direction. Nothing is stored or audited for any
of them, on either backend.
"""

from __future__ import annotations

from typing import Any

import httpx
from fastapi.routing import APIRoute

from decisiongraph.service.app import create_app
from decisiongraph.service.routing import SCOPE_KEY
from decisiongraph.service.settings import Settings
from tests.conftest import load_golden
from tests.runtime.support import wait_until
from tests.service.conftest import Server

BIG = str(2**63)  # one past the largest 64-bit integer


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"code", "message", "details", "request_id"}
    assert error["code"] == code
    assert response.headers["X-Request-ID"] == error["request_id"]
    return error


def test_numbers_beyond_64_bits_are_refused_not_overflowed(server: Server) -> None:
    invalid = "DG_ERR_INVALID_ARGUMENT"
    with server.client("operator_writer") as client:
        for path, params in (
            ("/api/v1/traces", {"since": BIG}),
            ("/api/v1/traces/t1/events", {"since_trace_seq": BIG}),
            ("/api/v1/graph/edges", {"node": "trace:t1", "cursor": f"both:{BIG}:e1"}),
            ("/api/v1/stream", {"after": BIG}),
        ):
            error_of(client.get(path, params=params), 400, invalid)
        error_of(
            client.post("/api/v1/admin/replay", json={"reason": "r", "to_log_seq": int(BIG)}),
            400,
            invalid,
        )
        error_of(
            client.post(f"/api/v1/admin/dead-letters/{BIG}/retry", json={"reason": "r"}),
            400,
            invalid,
        )
        for resume in (BIG, "abc", "-1"):
            refused = client.get("/api/v1/stream", headers={"Last-Event-ID": resume})
            error_of(refused, 400, invalid)
        assert client.get("/api/v1/admin/audit").json()["entries"] == []  # nothing audited


def test_nul_in_a_path_query_or_body_is_refused(server: Server) -> None:
    with server.client("operator_writer") as client:
        for path in (
            "/api/v1/traces/abc%00def",
            "/api/v1/traces?workflow=a%00b",
            "/api/v1/graph/subgraph?node_type=entity&node_id=a%00b",
            "/api/v1/precedents?policy_id=a%00",
            "/api/v1/graph/edges?node=a%00",
        ):
            error_of(client.get(path), 400, "DG_ERR_INVALID_ARGUMENT")
        error_of(
            client.post("/api/v1/admin/replay", json={"reason": "why\u0000not"}),
            400,
            "DG_ERR_INVALID_ARGUMENT",
        )
        assert client.get("/api/v1/admin/audit").json()["entries"] == []


def test_unknown_routes_and_methods_answer_in_the_envelope(server: Server) -> None:
    with server.client() as client:
        error_of(client.get("/api/v1/nope"), 404, "DG_ERR_NOT_FOUND")
        wrong = client.delete("/api/v1/events")
        error_of(wrong, 405, "DG_ERR_METHOD_NOT_ALLOWED")
        assert "POST" in wrong.headers["Allow"]


def test_the_key_is_checked_before_anything_else(server: Server) -> None:
    with server.client(key=None) as anonymous:
        error_of(anonymous.post("/api/v1/admin/replay"), 401, "DG_ERR_UNAUTHENTICATED")
        error_of(anonymous.get("/api/v1/graph/subgraph"), 401, "DG_ERR_UNAUTHENTICATED")
        error_of(
            anonymous.post("/api/v1/admin/replay", content=b'{"reason":'),
            401,
            "DG_ERR_UNAUTHENTICATED",
        )
    with server.client("reader") as reader:
        error_of(reader.post("/api/v1/admin/rebuild", json={}), 403, "DG_ERR_FORBIDDEN")
    with server.client("operator") as operator:
        malformed = operator.post(
            "/api/v1/admin/replay",
            content=b'{"reason":',
            headers={"content-type": "application/json"},
        )
        error_of(malformed, 400, "DG_ERR_MALFORMED_JSON")


def test_json_bodies_must_be_json(server: Server) -> None:
    events, _ = load_golden("renewal")
    with server.client() as client:
        for body in (b'{"events": [NaN]}', b"Infinity", b'{"events": [-Infinity]}'):
            refused = client.post(
                "/api/v1/events", content=body, headers={"content-type": "application/json"}
            )
            error_of(refused, 400, "DG_ERR_MALFORMED_JSON")
        heads = {p["head"] for p in client.get("/api/v1/projections").json()["projections"]}
        assert heads == {0}
        assert client.post("/api/v1/events", json={"events": events}).status_code == 200


def test_an_edge_cursor_keeps_its_direction(server: Server) -> None:
    events, _ = load_golden("renewal")
    trace_id = events[0]["trace_id"]
    with server.client("golden", tenant="renewal") as client:
        assert client.post("/api/v1/events", json={"events": events}).status_code == 200
        params = {"node": f"trace:{trace_id}", "direction": "both", "limit": 1}
        pages: list[httpx.Response] = []

        def first_page() -> bool:  # the workers (PostgreSQL) project in the background
            pages.append(client.get("/api/v1/graph/edges", params=params))
            return pages[-1].status_code == 200 and bool(pages[-1].json()["next_cursor"])

        wait_until(first_page, what="a first page of edges", detail=lambda: pages[-1].text)
        cursor = pages[-1].json()["next_cursor"]
        again = client.get("/api/v1/graph/edges", params={**params, "cursor": cursor})
        assert again.status_code == 200
        other = client.get(
            "/api/v1/graph/edges", params={**params, "direction": "outgoing", "cursor": cursor}
        )
        error_of(other, 400, "DG_ERR_INVALID_ARGUMENT")
        error_of(
            client.get("/api/v1/graph/edges", params={**params, "cursor": "garbage"}),
            400,
            "DG_ERR_INVALID_ARGUMENT",
        )


def test_refused_bodies_keep_the_request_id_and_are_counted(server: Server) -> None:
    with server.client() as client:
        refused = client.post(
            "/api/v1/events", content=b"x" * 6_000_000, headers={"X-Request-ID": "my-req-125"}
        )
        error = error_of(refused, 413, "DG_ERR_PAYLOAD_TOO_LARGE")
        assert error["request_id"] == "my-req-125"
        metrics = httpx.get(f"{server.url}/metrics").text
        counted = [
            line
            for line in metrics.splitlines()
            if line.startswith("dg_http_requests_total") and 'status="413"' in line
        ]
        assert counted and float(counted[0].rsplit(" ", 1)[1]) >= 1


def test_openapi_describes_authentication_and_resolves_every_reference(server: Server) -> None:
    spec = httpx.get(f"{server.url}/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["bearerAuth"]["description"],
    }
    trace = spec["paths"]["/api/v1/traces/{trace_id}"]["get"]
    assert trace["security"] == [{"bearerAuth": []}]
    assert "X-Tenant-ID" in {p["name"] for p in trace["parameters"]}
    stream = spec["paths"]["/api/v1/stream"]["get"]
    assert "Last-Event-ID" in {p["name"] for p in stream["parameters"]}
    assert "security" not in spec["paths"]["/healthz"]["get"]
    refs: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    refs.add(value)
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(spec)
    assert "#/components/schemas/EnvelopeIn" in refs
    for ref in refs:
        section, name = ref.removeprefix("#/components/").split("/")
        assert section in ("schemas", "headers"), ref
        assert name in spec["components"][section], ref


def test_every_api_route_names_the_scope_it_needs() -> None:
    """A route under /api/v1 without a scope would skip authentication (and
    its handler would find no principal): each must name one."""
    app = create_app(Settings(db=":memory:"))
    api = [r for r in app.routes if isinstance(r, APIRoute) and r.path.startswith("/api/")]
    assert len(api) >= 15
    unscoped = [r.path for r in api if not (r.openapi_extra or {}).get(SCOPE_KEY)]
    assert unscoped == []
