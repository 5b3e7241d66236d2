"""Trace listing and the operator endpoints, over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from decisiongraph.projections.rows import PROJECTION_NAMES
from tests.conftest import load_golden
from tests.runtime.poison import POISON, Poisoned
from tests.runtime.support import wait_until
from tests.service.conftest import Server, serving


def test_trace_list_pages_and_admin_actions(server: Server) -> None:
    dealdesk, expected = load_golden("dealdesk")
    support, _ = load_golden("support")
    with server.client("writer") as writer:
        assert writer.post("/api/v1/events", json={"events": dealdesk}).status_code == 200
        assert writer.post("/api/v1/events", json={"events": support}).status_code == 200

        def both_listed() -> bool:
            # 503 DG_ERR_PROJECTION_OUT_OF_DATE while the workers catch up
            # (they may trail by more than the read wait on a loaded machine).
            answer = writer.get("/api/v1/traces")
            return answer.status_code == 200 and len(answer.json()["traces"]) == 2

        wait_until(both_listed, what="both traces listed")
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
        assert replay.json()["skipped"] == []  # no operator skip: a plain replay
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
        assert actions[:3] == ["projection.rebuild.done", "projection.rebuild", "projection.replay"]
        assert operator.get("/api/v1/projections/dead-letters").json() == {"dead_letters": []}
        missing = operator.post("/api/v1/admin/dead-letters/42/retry", json={"reason": "x"})
        assert missing.status_code == 404
        unconfirmed = operator.post(
            "/api/v1/admin/dead-letters/42/skip", json={"reason": "x", "confirm": "no"}
        )
        assert unconfirmed.status_code == 400


@pytest.fixture
def poisoned_server(poisoned: Poisoned) -> Iterator[Server]:
    """A server started on a log whose event ``POISON`` was tampered with
    before any projection read it (so every projection dead-letters it):
    ``poisoned`` from the dead-letter tests, on each backend."""
    with serving(poisoned.url) as running:
        yield running


def replay(operator: httpx.Client, **extra: Any) -> httpx.Response:
    return operator.post("/api/v1/admin/replay", json={"reason": "audit", **extra})


def test_replay_honours_an_audited_skip_of_a_tampered_event(poisoned_server: Server) -> None:
    with poisoned_server.client("operator") as operator:

        def open_letters() -> list[dict[str, Any]]:
            found = operator.get("/api/v1/projections/dead-letters", params={"status": "open"})
            letters: list[dict[str, Any]] = found.json()["dead_letters"]
            return letters

        wait_until(
            lambda: len(open_letters()) == len(PROJECTION_NAMES),
            what="every projection to dead-letter the tampered event",
        )
        assert {(d["projection_name"], d["log_seq"]) for d in open_letters()} == {
            (name, POISON) for name in PROJECTION_NAMES
        }
        refused = replay(operator)  # nothing skipped yet: the tampered event stops it
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["code"] == "DG_ERR_CONFLICT"
        before = replay(operator, to_log_seq=POISON - 1)
        assert before.status_code == 200, before.text
        assert before.json()["skipped"] == []

        for letter in open_letters():
            skipped = operator.post(
                f"/api/v1/admin/dead-letters/{letter['id']}/skip",
                json={"reason": "tampered row", "confirm": "skip"},
            )
            assert skipped.status_code == 200, skipped.text

        def projections() -> dict[str, Any]:
            found: dict[str, Any] = operator.get(
                "/api/v1/projections", params={"include_digests": "true"}
            ).json()
            return found

        def settled() -> bool:
            rows = projections()["projections"]
            return all(r["cursor"] == r["head"] > POISON and r["status"] == "healthy" for r in rows)

        wait_until(settled, what="every projection past the skipped event")
        live = projections()
        head = live["projections"][0]["head"]
        at_head = replay(operator)
        assert at_head.status_code == 200, at_head.text
        assert at_head.json() == {
            "to_log_seq": None,
            "digests": live["digests"],
            "skipped": [  # sorted by projection, then log_seq
                {"projection": name, "log_seq": POISON} for name in sorted(PROJECTION_NAMES)
            ],
        }
        again = replay(operator, to_log_seq=POISON - 1).json()
        assert again == before.json()  # the skip is after that position: not in effect
        assert replay(operator, to_log_seq=head).json()["digests"] == live["digests"]

        schema = operator.get("/openapi.json").json()["components"]["schemas"]
        documented = schema["ReplayResponse"]["properties"]["skipped"]
        assert "skipped" in documented["description"]
        assert set(schema["SkippedEventOut"]["properties"]) == {"projection", "log_seq"}
