"""Operator actions through the one protocol: the embedded library and a real
server give the same dead letters, audited retries and skips, replays and
rebuilds, and refuse the same bad requests with the same codes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from decisiongraph import Client, DecisionGraph, DecisionGraphAPI
from decisiongraph.core.errors import DecisionGraphError
from decisiongraph.runtime.process import open_runtime_store
from tests.conftest import load_golden
from tests.service.conftest import Server

SCENARIO = "dealdesk"


def park_one(db: str, tenant: str) -> None:
    """A dead letter, parked through the store API as a failing worker would."""
    store = open_runtime_store(db)
    try:
        event = store.list_events(tenant, since_log_seq=2, limit=1)[0]
        store.add_dead_letter(
            tenant,
            "trace_summary",
            event.log_seq,
            event.event_id,
            "DG_ERR_CONFLICT",
            "boom",
            3,
            "2026-01-01T00:00:00.000000Z",
        )
    finally:
        store.close()


def operate(dg: DecisionGraphAPI, last: int) -> dict[str, Any]:
    errors = []
    for failing in (
        lambda: dg.skip_dead_letter(1, "drill", confirm="no"),
        lambda: dg.retry_dead_letter(404, "drill"),
        lambda: dg.retry_dead_letter(1, "  "),
        lambda: dg.rebuild_projection("context_graph", "drill", confirm="yes"),
        lambda: dg.rebuild_projection("nope", "drill", confirm="nope"),
    ):
        with pytest.raises(DecisionGraphError) as caught:
            failing()
        errors.append(caught.value.code)
    open_letters = dg.dead_letters(status="open")
    skipped = dg.skip_dead_letter(open_letters[0].id, "known bad input", confirm="skip")
    replayed = dg.replay("audit", to_log_seq=last)
    cursor = dg.rebuild_projection("context_graph", "drill", confirm="context_graph")
    audit = dg.audit_log()
    return {
        "open": [(d.projection_name, d.log_seq, d.error_code, d.status) for d in open_letters],
        "skipped": (skipped.status, skipped.resolution is not None),
        "all": [(d.log_seq, d.status) for d in dg.dead_letters()],
        "replayed": replayed,
        "cursor": cursor,
        "audit": [(e.action, e.target, e.reason) for e in audit],
        "errors": errors,
    }


def test_operators_same_embedded_and_remote(server: Server, tmp_path: Path) -> None:
    events, expected = load_golden(SCENARIO)
    embedded_db = str(tmp_path / "operated.db")
    with DecisionGraph(embedded_db, operator="ops") as dg:
        dg.append_events(events)
        park_one(embedded_db, "default")
        embedded = operate(dg, len(events))
        assert {e.actor for e in dg.audit_log()} == {"ops"}
    with Client(server.url, server.keys["operator_writer"]) as remote_dg:
        remote_dg.append_events(events)
        assert remote_dg.wait_for(len(events), timeout=60)
        park_one(server.db, "default")
        with Client(server.url, server.keys["other"]) as other_tenant:
            assert other_tenant.dead_letters() == []  # another tenant's letters stay hidden
        with Client(server.url, server.keys["writer"]) as writer:
            with pytest.raises(DecisionGraphError) as denied:
                writer.replay("audit")  # writing is not operating: the admin scope is needed
            assert denied.value.code == "DG_ERR_FORBIDDEN"
        remote = operate(remote_dg, len(events))
        assert {e.actor for e in remote_dg.audit_log()} == {"operator_writer"}
    assert remote == embedded
    # What both agreed on is right, not merely equal.
    assert embedded["replayed"].as_dict() == expected
    assert embedded["open"] == [("trace_summary", 3, "DG_ERR_CONFLICT", "open")]
    assert embedded["skipped"] == ("skipped", True)
    assert [action for action, _, _ in embedded["audit"]] == [
        "projection.rebuild.done",  # newest first: the rebuild's outcome, then its start
        "projection.rebuild",
        "projection.replay",
        "dead_letter.skip",
    ]
    assert (
        embedded["errors"]
        == ["DG_ERR_INVALID_ARGUMENT", "DG_ERR_NOT_FOUND"] + ["DG_ERR_INVALID_ARGUMENT"] * 3
    )
