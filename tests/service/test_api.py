"""The HTTP API end to end, over real HTTP on loopback, on both backends."""

from __future__ import annotations

import json
import time

import httpx

from decisiongraph.runtime.process import open_runtime_store
from tests.conftest import GOLDEN_SCENARIOS, load_golden
from tests.service.conftest import Server


def wait_for_digests(client: httpx.Client, expected: dict[str, str]) -> dict[str, str]:
    deadline = time.monotonic() + 30
    while True:
        body = client.get("/api/v1/projections", params={"include_digests": "true"}).json()
        if body["digests"] == expected or time.monotonic() > deadline:
            return dict(body["digests"])
        time.sleep(0.05)


def test_golden_scenarios_through_the_api(server: Server) -> None:
    for scenario in GOLDEN_SCENARIOS:
        events, expected = load_golden(scenario)
        with server.client("golden", tenant=scenario) as client:
            response = client.post("/api/v1/events", json={"events": events})
            assert response.status_code == 200, response.text
            stored = response.json()["events"]
            assert [e["log_seq"] for e in stored] == list(range(1, len(events) + 1))
            assert wait_for_digests(client, expected) == expected
            again = client.post("/api/v1/events", json=events[0]).json()["events"][0]
            assert again["repeated"] is True and again["log_seq"] == 1
    with server.client("golden", tenant=GOLDEN_SCENARIOS[0]) as client:
        trace_id = load_golden(GOLDEN_SCENARIOS[0])[0][0]["trace_id"]
        summary = client.get(f"/api/v1/traces/{trace_id}").json()
        assert summary["trace_id"] == trace_id and summary["event_count"] == 2
        events = client.get(f"/api/v1/traces/{trace_id}/events").json()["events"]
        assert [e["trace_seq"] for e in events] == list(range(len(events)))
        graph = client.get(
            "/api/v1/graph/subgraph", params={"node_type": "trace", "node_id": trace_id}
        ).json()
        assert graph["center"] == f"trace:{trace_id}" and graph["edges"]
        pages, cursor = [], None
        while True:
            params = {"node": f"trace:{trace_id}", "limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = client.get("/api/v1/graph/edges", params=params).json()
            pages.extend(page["edges"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(pages) == len({e["edge_id"] for e in pages}) >= 3
        hits = client.get("/api/v1/precedents", params={"limit": 5}).json()["precedents"]
        assert hits[0]["trace_id"] == trace_id


def test_auth(server: Server) -> None:
    with server.client(None) as anonymous:
        response = anonymous.get("/api/v1/projections")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "DG_ERR_UNAUTHENTICATED"
    with server.client("dgk_bogus_key") as wrong:
        assert wrong.get("/api/v1/projections").status_code == 401
    events, _ = load_golden("support")
    with server.client("reader") as reader:
        denied = reader.post("/api/v1/events", json=events[0])
        assert denied.status_code == 403
        assert denied.json()["error"]["code"] == "DG_ERR_FORBIDDEN"
    with server.client("writer") as writer:
        assert writer.post("/api/v1/events", json=events[0]).status_code == 200
    # Cross-tenant: 404 and no data, whatever the key can do elsewhere.
    trace_id = events[0]["trace_id"]
    with server.client("other", tenant="default") as other:
        response = other.get(f"/api/v1/traces/{trace_id}/events")
        assert response.status_code == 404
        assert trace_id not in response.text.replace(f"'{trace_id}'", "")  # no event data
        assert "payload" not in response.text
    with server.client("other") as other:
        assert other.get(f"/api/v1/traces/{trace_id}/events").status_code == 404
    with server.client("multi") as multi:
        assert multi.get("/api/v1/projections").status_code == 400  # which tenant?
        assert multi.get("/api/v1/projections", headers={"X-Tenant-ID": "other"}).status_code == 200
    # Rotation overlaps; revocation bites on the next request.
    store = open_runtime_store(server.db)
    new_key = store.add_key("writer")
    old_key_id = server.keys["writer"].split("_")[1]
    with server.client(new_key) as rotated, server.client("writer") as old:
        assert rotated.get("/api/v1/projections").status_code == 200
        assert old.get("/api/v1/projections").status_code == 200
        store.revoke_key(old_key_id)
        assert old.get("/api/v1/projections").status_code == 401
        assert rotated.get("/api/v1/projections").status_code == 200
    store.close()


def test_bad_input_stores_nothing(server: Server) -> None:
    events, _ = load_golden("renewal")
    with server.client() as client:
        malformed = client.post(
            "/api/v1/events", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert malformed.status_code == 400
        assert malformed.json()["error"]["code"] == "DG_ERR_MALFORMED_JSON"
        huge = client.post("/api/v1/events", content=b"x" * 6_000_000)
        assert huge.status_code == 413
        assert huge.json()["error"]["code"] == "DG_ERR_PAYLOAD_TOO_LARGE"
        chunked = client.post("/api/v1/events", content=(b"x" * 1_000_000 for _ in range(6)))
        assert chunked.status_code == 413  # no Content-Length: counted as it streams
        invalid = dict(events[0], payload={})
        response = client.post("/api/v1/events", json=invalid)
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "DG_ERR_SCHEMA_VIOLATION"
        structural = client.post("/api/v1/events", json={"event_id": "x"})
        assert structural.status_code == 400
        batch = [dict(e) for e in events]
        batch[5] = dict(batch[5], payload={"decision": "x"})
        response = client.post("/api/v1/events", json={"events": batch})
        assert response.status_code == 422
        assert response.json()["error"]["details"]["index"] == 5
        too_many = client.post("/api/v1/events", json={"events": [events[0]] * 1001})
        assert too_many.status_code == 413
        projections = client.get("/api/v1/projections").json()
        assert {p["head"] for p in projections["projections"]} == {0}  # nothing stored
        assert client.post("/api/v1/events", json=events[0]).status_code == 200
        conflict = client.post("/api/v1/events", json=dict(events[0], tags=["changed"]))
        assert conflict.status_code == 409
        assert conflict.json()["error"]["code"] == "DG_ERR_IDEMPOTENCY_CONFLICT"
        bad_query = client.get("/api/v1/precedents", params={"limit": 0})
        assert bad_query.status_code == 400
        envelope = bad_query.json()["error"]
        assert set(envelope) == {"code", "message", "details", "request_id"}
        assert bad_query.headers["X-Request-ID"] == envelope["request_id"]
        traced = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
        assert traced.headers["X-Request-ID"] == "abc-123"


def test_openapi_and_operations(server: Server) -> None:
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").json() == {"status": "ready"}
        spec = client.get("/openapi.json").json()
        assert "/api/v1/events" in spec["paths"]
        assert "oneOf" in json.dumps(spec["paths"]["/api/v1/events"]["post"]["requestBody"])
        operations = [
            operation
            for item in spec["paths"].values()
            for operation in item.values()
            if isinstance(operation, dict) and "responses" in operation
        ]
        ids = [operation["operationId"] for operation in operations]
        assert len(ids) == len(set(ids)), "operationIds must be unique"
        # Authenticated answers declare the rate-limit headers they carry.
        post = spec["paths"]["/api/v1/events"]["post"]["responses"]
        assert (
            set(post["200"]["headers"])
            == set(post["429"]["headers"])
            == {
                "RateLimit-Limit",
                "RateLimit-Remaining",
                "RateLimit-Reset",
            }
        )
        assert "headers" not in spec["paths"]["/healthz"]["get"]["responses"]["200"]
        assert client.head("/healthz").status_code == 200
        assert client.get("/docs").status_code == 200
