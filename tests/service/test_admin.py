"""Trace listing and the operator endpoints, over real HTTP."""

from __future__ import annotations

import time

from tests.conftest import load_golden
from tests.service.conftest import Server


def test_trace_list_pages_and_admin_actions(server: Server) -> None:
    dealdesk, expected = load_golden("dealdesk")
    support, _ = load_golden("support")
    with server.client("writer") as writer:
        assert writer.post("/api/v1/events", json={"events": dealdesk}).status_code == 200
        assert writer.post("/api/v1/events", json={"events": support}).status_code == 200
        deadline = time.monotonic() + 30
        while writer.get("/api/v1/traces").json()["traces"].__len__() < 2:
            assert time.monotonic() < deadline, "projections did not catch up"
            time.sleep(0.05)
        seen, cursor = [], None
        while True:
            params: dict[str, object] = {"limit": 1}
            if cursor:
                params["cursor"] = cursor
            page = writer.get("/api/v1/traces", params=params).json()
            seen.extend(t["trace_id"] for t in page["traces"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == [support[0]["trace_id"], dealdesk[0]["trace_id"]]  # most recent first
        only = writer.get("/api/v1/traces", params={"workflow": "nope"}).json()["traces"]
        assert only == []
        assert writer.get("/api/v1/traces", params={"cursor": "%%%"}).status_code == 400
        denied = writer.post("/api/v1/admin/replay", json={"reason": "audit"})
        assert denied.status_code == 403
    with server.client("operator") as operator:
        assert operator.post("/api/v1/admin/replay", json={}).status_code == 400
        replay = operator.post(
            "/api/v1/admin/replay", json={"reason": "audit", "to_log_seq": len(dealdesk)}
        )
        assert replay.status_code == 200, replay.text
        assert replay.json()["digests"] == expected
        wrong = operator.post(
            "/api/v1/admin/rebuild",
            json={"projection": "context_graph", "reason": "drill", "confirm": "yes"},
        )
        assert wrong.status_code == 400
        rebuilt = operator.post(
            "/api/v1/admin/rebuild",
            json={"projection": "context_graph", "reason": "drill", "confirm": "context_graph"},
        )
        assert rebuilt.status_code == 200, rebuilt.text
        assert rebuilt.json()["cursor"] == len(dealdesk) + len(support)
        actions = [e["action"] for e in operator.get("/api/v1/admin/audit").json()["entries"]]
        assert actions[:2] == ["projection.rebuild", "projection.replay"]
        assert operator.get("/api/v1/projections/dead-letters").json() == {"dead_letters": []}
        missing = operator.post("/api/v1/admin/dead-letters/42/retry", json={"reason": "x"})
        assert missing.status_code == 404
        unconfirmed = operator.post(
            "/api/v1/admin/dead-letters/42/skip", json={"reason": "x", "confirm": "no"}
        )
        assert unconfirmed.status_code == 400
