"""The ``decisiongraph`` command, run as a real subprocess on both backends."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import GOLDEN_DIR, GOLDEN_SCENARIOS, load_golden


def dg(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "decisiongraph", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
    )


def replay_json(db: str, *extra: str) -> dict[str, str]:
    done = dg("replay", db, "--json", *extra)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1  # exactly one JSON object on stdout
    parsed: dict[str, str] = json.loads(lines[0])
    return parsed


@pytest.mark.parametrize("scenario", GOLDEN_SCENARIOS)
def test_import_golden_then_replay_gives_expected_digests(backend_url: str, scenario: str) -> None:
    done = dg("import", backend_url, str(GOLDEN_DIR / scenario / "events.json"))
    assert done.returncode == 0, done.stderr
    assert "Imported 9 event" in done.stdout or "Imported 8 event" in done.stdout
    _, expected = load_golden(scenario)
    assert replay_json(backend_url) == expected
    status = json.loads(dg("projection-status", backend_url, "--json").stdout)
    assert {p["status"] for p in status["projections"]} == {"healthy"}


def test_import_accepts_array_and_json_lines_and_export_round_trips(tmp_path: Path) -> None:
    events, expected = load_golden("renewal")
    array_file = tmp_path / "events.json"
    array_file.write_text(json.dumps(events))
    lines_file = tmp_path / "events.jsonl"
    lines_file.write_text("\n".join(json.dumps(e) for e in events) + "\n\n")
    for index, source in enumerate((array_file, lines_file)):
        db = str(tmp_path / f"in{index}.db")
        assert dg("import", db, str(source)).returncode == 0
        assert replay_json(db) == expected
    exported = tmp_path / "out.jsonl"
    assert dg("export", str(tmp_path / "in0.db"), str(exported)).returncode == 0
    again = str(tmp_path / "again.db")
    assert dg("import", again, str(exported)).returncode == 0
    assert replay_json(again) == expected
    # Export is byte-stable on unchanged data.
    assert dg("export", again, "-").stdout == dg("export", again, "-").stdout


def test_bad_files_store_nothing_and_name_positions(tmp_path: Path) -> None:
    events, _ = load_golden("dealdesk")
    db = str(tmp_path / "bad.db")
    lines = [json.dumps(e) for e in events]
    lines[2] = "{not json"
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join(lines))
    done = dg("import", db, str(broken))
    assert done.returncode == 1
    assert "line 3" in done.stderr and "DG_ERR_INVALID_ARGUMENT" in done.stderr
    invalid = [dict(e) for e in events]
    invalid[4] = {**invalid[4], "payload": {}}
    bad_payload = tmp_path / "invalid.json"
    bad_payload.write_text(json.dumps({"events": invalid}))
    done = dg("import", db, str(bad_payload))
    assert done.returncode == 1 and "event 4" in done.stderr
    assert "DG_ERR_SCHEMA_VIOLATION" in done.stderr
    out_of_order = events[:3] + events[4:]  # a hole in trace_seq, found at append time
    gap = tmp_path / "gap.json"
    gap.write_text(json.dumps(out_of_order))
    done = dg("import", db, str(gap))
    assert done.returncode == 1 and "DG_ERR_EVENT_SEQUENCE_INVALID" in done.stderr
    assert "event 3" in done.stderr
    if Path(db).exists():
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT COUNT(*) FROM dg_event_log").fetchone() == (0,)


def test_verify_catches_an_edited_row(tmp_path: Path) -> None:
    db = str(tmp_path / "chain.db")
    assert dg("import", db, str(GOLDEN_DIR / "support" / "events.json")).returncode == 0
    ok = dg("verify", db)
    assert ok.returncode == 0 and "tenant default: OK, 8 events" in ok.stdout
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TRIGGER dg_event_log_no_update")
        conn.execute("UPDATE dg_event_log SET occurred_at = 'x' WHERE log_seq = 5")
    bad = dg("verify", db)
    assert bad.returncode == 2
    assert "TAMPERED at log_seq 5" in bad.stdout


def test_seed_is_deterministic(tmp_path: Path) -> None:
    first, second, other = (str(tmp_path / name) for name in ("a.db", "b.db", "c.db"))
    for db, seed in ((first, "5"), (second, "5"), (other, "6")):
        done = dg("seed", db, "--traces", "30", "--seed", seed)
        assert done.returncode == 0, done.stderr
    assert replay_json(first) == replay_json(second)
    assert replay_json(first) != replay_json(other)
    assert dg("verify", first).returncode == 0


def test_dump_trace_and_missing_database(tmp_path: Path) -> None:
    db = str(tmp_path / "dump.db")
    events, _ = load_golden("dealdesk")
    assert dg("import", db, str(GOLDEN_DIR / "dealdesk" / "events.json")).returncode == 0
    trace_id = events[0]["trace_id"]
    dumped = json.loads(dg("dump-trace", db, trace_id, "--include-payload").stdout)
    assert [row["trace_seq"] for row in dumped] == list(range(len(events)))
    assert dumped[0]["payload"] == events[0]["payload"]
    unknown = dg("dump-trace", db, "no-such-trace")
    assert unknown.returncode == 1 and "Error getting trace events" in unknown.stderr
    missing = dg("replay", str(tmp_path / "nope.db"))
    assert missing.returncode == 1 and "not found" in missing.stderr
    assert not (tmp_path / "nope.db").exists()


def test_replay_to_a_past_position(tmp_path: Path) -> None:
    events, expected = load_golden("dealdesk")
    db = str(tmp_path / "to.db")
    mixed = tmp_path / "mixed.json"
    second = [
        {
            **e,
            "trace_id": "other",
            "event_id": e["event_id"] + "-2",
            "idempotency_key": e["idempotency_key"] + "-2",
        }
        for e in events
    ]
    mixed.write_text(json.dumps(events + second))
    assert dg("import", db, str(mixed)).returncode == 0
    assert replay_json(db, "--to", str(len(events))) == expected
    assert replay_json(db) != expected


def test_runtime_commands(tmp_path: Path) -> None:
    db = str(tmp_path / "rt.db")
    assert dg("seed", db, "--traces", "20", "--seed", "2").returncode == 0
    table = dg("projection-status", db)
    assert table.returncode == 0
    assert "context_graph" in table.stdout and "healthy" in table.stdout
    assert dg("compare", db).stdout.strip() == "match"
    refused = dg("rebuild", db, "--projection", "context_graph")
    assert refused.returncode == 1 and "--reason" in refused.stderr
    rebuilt = dg("rebuild", db, "--projection", "context_graph", "--reason", "drill")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert dg("compare", db).stdout.strip() == "match"
    with sqlite3.connect(db) as conn:
        audit = conn.execute("SELECT action, reason FROM dg_audit_log").fetchall()
    assert ("projection.rebuild", "drill") in audit
    assert json.loads(dg("dead-letters", "list", db).stdout) == []
    skip = dg("dead-letters", "skip", db, "1", "--reason", "x")
    assert skip.returncode == 1 and "--confirm skip" in skip.stderr
    missing = dg("dead-letters", "retry", db, "1", "--reason", "x")
    assert missing.returncode == 1 and "DG_ERR_NOT_FOUND" in missing.stderr


def test_accounts_commands(tmp_path: Path) -> None:
    db = str(tmp_path / "acct.db")
    created = dg(
        "accounts",
        "create",
        db,
        "--name",
        "agent",
        "--tenant",
        "t1",
        "--scope",
        "events:write",
        "--scope",
        "events:read",
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1].split()[-1]
    assert key.startswith("dgk_")
    listed = json.loads(dg("accounts", "list", db).stdout)
    assert listed[0]["name"] == "agent" and listed[0]["tenants"] == ["t1"]
    assert key not in json.dumps(listed)  # keys are never shown again
    rotated = dg("accounts", "rotate", db, "agent").stdout.strip().split()[-1]
    assert rotated.startswith("dgk_") and rotated != key
    key_id = key.split("_")[1]
    assert dg("accounts", "revoke", db, key_id).returncode == 0
    remaining = json.loads(dg("accounts", "list", db).stdout)[0]["active_key_ids"]
    assert remaining == [rotated.split("_")[1]]
    bad = dg("accounts", "create", db, "--name", "x", "--tenant", "t1", "--scope", "root")
    assert bad.returncode == 1 and "DG_ERR_INVALID_ARGUMENT" in bad.stderr
