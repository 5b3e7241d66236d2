"""A SQLite server projects appends inline only while its projections are
current; a backlog or a failed projection stays the workers' business and
never fails (or slows) a request."""

from __future__ import annotations

import time
from pathlib import Path

from decisiongraph.store.sqlite import SQLiteEventStore
from tests.runtime.poison import POISON, raw_sql, set_payload
from tests.runtime.support import T, seeded
from tests.service.conftest import start_server


def test_appends_succeed_while_a_poisoned_projection_fails_behind_them(tmp_path: Path) -> None:
    db = str(tmp_path / "backlog.db")
    store = SQLiteEventStore(db)
    store.append(T, seeded(20, seed=21))  # a backlog the workers must project
    store.close()
    ((original,),) = raw_sql(
        db, "SELECT payload_json FROM dg_event_log WHERE tenant_id = ? AND log_seq = ?", (T, POISON)
    )
    raw_sql(db, "DROP TRIGGER dg_event_log_no_update")
    set_payload(db, POISON, original[:-1] + ',"tampered":true}')
    server = start_server(db)
    try:
        fresh = [event.to_dict() for event in seeded(3, seed=99)]
        with server.client("operator_writer") as client:
            response = client.post("/api/v1/events", json={"events": fresh})
            assert response.status_code == 200, response.text
            stored = response.json()["events"]
            assert [e["repeated"] for e in stored] == [False] * len(fresh)
            head = stored[-1]["log_seq"]
            trace = client.get(f"/api/v1/traces/{fresh[0]['trace_id']}/events")
            assert trace.status_code == 200 and len(trace.json()["events"]) > 0
            # The workers, not the request, meet the poison: they park it and
            # the projections stop there, failed, with the new events pending.
            deadline = time.monotonic() + 60
            while True:
                statuses = client.get("/api/v1/projections").json()["projections"]
                if all(s["status"] == "failed" for s in statuses):
                    break
                assert time.monotonic() < deadline, statuses
                time.sleep(0.1)
            assert {s["cursor"] for s in statuses} == {POISON - 1}
            assert {s["head"] for s in statuses} == {head}
            more = client.post(
                "/api/v1/events", json={"events": [e.to_dict() for e in seeded(1, seed=5)]}
            )
            assert more.status_code == 200, more.text
    finally:
        server.process.terminate()
        server.process.wait(30)
