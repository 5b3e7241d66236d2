"""The ``decisiongraph`` command, run as a real subprocess on both backends."""

from __future__ import annotations

import getpass
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from tests.conftest import GOLDEN_DIR, GOLDEN_SCENARIOS, load_golden
from tests.test_tamper import RawDatabase


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
    assert done.stderr == ""  # no operator skip, so nothing to report
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
    assert bad.returncode == 3  # integrity, not usage (2)
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
    assert unknown.returncode == 1
    assert unknown.stderr.startswith(
        "Error getting trace events: DG_ERR_NOT_FOUND: trace 'no-such-trace'"
    )
    missing = dg("replay", str(tmp_path / "nope.db"))
    assert missing.returncode == 1
    assert missing.stderr == f"Error: Database file '{tmp_path / 'nope.db'}' not found\n"
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
    refused = dg("rebuild", db, "--projection", "context_graph")  # --reason is required
    assert refused.returncode == 2 and "Missing option '--reason'" in refused.stderr
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


# -- verify: nothing may hide from the audit -----------------------------------
LOG_COLUMNS = (
    "tenant_id, log_seq, event_id, trace_id, trace_seq, event_type, occurred_at, recorded_at, "
    "producer_id, system, subsystem, actor_type, actor_id, correlation_id, causation_event_id, "
    "idempotency_key, schema_version, payload_json, payload_hash, tags_json, chain_hash"
)


def _imported(backend_url: str, scenario: str = "support") -> int:
    done = dg("import", backend_url, str(GOLDEN_DIR / scenario / "events.json"))
    assert done.returncode == 0, done.stderr
    return len(load_golden(scenario)[0])


def test_verify_reports_a_tenant_whose_head_rows_were_deleted(backend_url: str) -> None:
    n = _imported(backend_url)
    assert dg("verify", backend_url).returncode == 0
    raw = RawDatabase(backend_url)
    try:
        raw.execute("DELETE FROM dg_log_head")  # no guard protects the head table
    finally:
        raw.close()
    done = dg("verify", backend_url)
    assert done.returncode == 3, done.stdout + done.stderr
    assert f"tenant default: TAMPERED at log_seq {n}: log head record is missing" in done.stdout
    named = dg("verify", backend_url, "--tenant", "default")
    assert named.returncode == 3 and f"TAMPERED at log_seq {n}" in named.stdout


def test_verify_reports_rows_forged_for_a_new_tenant(backend_url: str) -> None:
    _imported(backend_url)
    raw = RawDatabase(backend_url)
    try:
        raw.execute(
            f"INSERT INTO dg_event_log ({LOG_COLUMNS}) SELECT 'intruder', "
            + LOG_COLUMNS.replace("tenant_id, ", "").replace("chain_hash", "'sha256:' || 'bogus'")
            + " FROM dg_event_log WHERE tenant_id = 'default' AND log_seq <= 2"
        )
        assert raw.row_count("intruder") == 2
    finally:
        raw.close()
    done = dg("verify", backend_url)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "tenant default: OK, 8 events" in done.stdout
    assert "tenant intruder: TAMPERED at log_seq 1: chain hash mismatch" in done.stdout


def test_verify_refuses_to_check_nothing(backend_url: str) -> None:
    _imported(backend_url)
    ghost = dg("verify", backend_url, "--tenant", "ghost")
    assert ghost.returncode == 1
    assert "OK" not in ghost.stdout
    assert "DG_ERR_NOT_FOUND: tenant 'ghost' has no events" in ghost.stderr
    empty_name = dg("verify", backend_url, "--tenant", "")
    assert empty_name.returncode == 1 and empty_name.stdout == ""
    assert "DG_ERR_INVALID_ARGUMENT" in empty_name.stderr


def test_verify_of_an_empty_database_is_not_a_clean_audit(tmp_path: Path) -> None:
    db = str(tmp_path / "other.db")
    assert dg("seed", db, "--traces", "1", "--tenant", "other").returncode == 0
    assert dg("verify", db).returncode == 0
    fresh = str(tmp_path / "fresh.db")
    assert dg("accounts", "create", fresh, "--name", "a", "--tenant", "t", "--scope",
              "events:read").returncode == 0  # fmt: skip
    done = dg("verify", fresh)
    assert done.returncode == 1 and "nothing was verified" in done.stderr


# -- import: every bad event, once; whole-file errors once ---------------------
def test_import_reports_every_bad_event_with_position_and_code(tmp_path: Path) -> None:
    events, _ = load_golden("dealdesk")
    bad = [dict(e) for e in events]
    bad[1] = {**bad[1], "payload": {**bad[1]["payload"], "score": 0.5}}
    bad[3] = {**bad[3], "payload": {**bad[3]["payload"], "note": "password=hunter2hunter2"}}
    bad[5] = {**bad[5], "payload": {}}
    bad[6] = {**bad[6], "idempotency_key": ""}
    db = str(tmp_path / "all.db")
    array_file = tmp_path / "bad.json"
    array_file.write_text(json.dumps(bad))
    lines_file = tmp_path / "bad.jsonl"
    lines_file.write_text("\n".join(json.dumps(e) for e in bad))
    for source, label in ((array_file, "event"), (lines_file, "line")):
        done = dg("import", db, str(source))
        assert done.returncode == 1
        offset = 0 if label == "event" else 1  # JSON Lines count lines from 1
        reported = [line for line in done.stderr.splitlines() if line.startswith("Error: ")]
        assert len(reported) == 5, done.stderr  # four events and the summary
        codes = {
            1: "DG_ERR_SCHEMA_VIOLATION",
            3: "DG_ERR_PII_POLICY_VIOLATION",
            5: "DG_ERR_SCHEMA_VIOLATION",
            6: "DG_ERR_INVALID_ARGUMENT",
        }
        for index, code in codes.items():
            assert f"Error: {code}: {label} {index + offset}: " in done.stderr, done.stderr
        assert f"4 invalid event(s) in '{source}'; nothing was imported" in done.stderr
    assert not Path(db).exists()  # nothing stored, not even an empty database


def test_import_names_the_file_position_of_a_sequencing_error(tmp_path: Path) -> None:
    events, _ = load_golden("dealdesk")
    lines_file = tmp_path / "gap.jsonl"
    lines_file.write_text("\n\n".join(json.dumps(e) for e in events[:3] + events[4:]))
    done = dg("import", str(tmp_path / "gap.db"), str(lines_file))
    assert done.returncode == 1
    assert "Error: DG_ERR_EVENT_SEQUENCE_INVALID: line 7: Expected trace_seq 3" in done.stderr


def test_a_syntax_error_in_a_pretty_printed_file_is_one_error(tmp_path: Path) -> None:
    text = (GOLDEN_DIR / "dealdesk" / "events.json").read_text("utf-8").splitlines()
    line = next(i for i in range(100, len(text)) if text[i].endswith(","))
    text[line] = text[line][:-1]  # sed 'Ns/,$//'
    broken = tmp_path / "broken.json"
    broken.write_text("\n".join(text) + "\n")
    done = dg("import", str(tmp_path / "x.db"), str(broken))
    assert done.returncode == 1
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 1, done.stderr
    with pytest.raises(json.JSONDecodeError) as caught:
        json.loads("\n".join(text))
    where = caught.value
    expected = f"malformed JSON at line {where.lineno} column {where.colno}: {where.msg}"
    assert errors[0].startswith(f"Error: DG_ERR_INVALID_ARGUMENT: {expected}"), errors[0]
    array = tmp_path / "array.json"
    array.write_text(json.dumps(load_golden("dealdesk")[0], indent=2)[:-3])  # cut short
    done = dg("import", str(tmp_path / "x.db"), str(array))
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1
    assert "malformed JSON at line" in done.stderr
    assert not (tmp_path / "x.db").exists()


def test_events_that_is_not_an_array_is_named(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"events": "x"}')
    done = dg("import", str(tmp_path / "x.db"), str(wrong))
    assert done.returncode == 1
    assert done.stderr.strip() == (
        'Error: DG_ERR_INVALID_ARGUMENT: "events" must be an array of event envelopes; '
        f"nothing was imported from '{wrong}'"
    )


# -- export: a clean error, nothing half-written ---------------------------------
def test_export_to_an_unwritable_path_is_a_clean_error(tmp_path: Path) -> None:
    db = str(tmp_path / "x.db")
    _imported(db)
    for target in (tmp_path / "no" / "such" / "dir" / "x.jsonl", tmp_path):
        done = dg("export", db, str(target))
        assert done.returncode == 1
        assert "Traceback" not in done.stderr
        assert done.stderr.startswith(
            f"Error: DG_ERR_INVALID_ARGUMENT: cannot write '{target}': "
        ), done.stderr
    out = tmp_path / "out.jsonl"
    out.write_text("previous export\n")
    out.chmod(0o640)
    assert dg("export", db, str(out)).returncode == 0
    assert len(out.read_text().splitlines()) == 8
    assert out.stat().st_mode & 0o777 == 0o640  # the old file's mode, as open() keeps it
    probe = tmp_path / "probe"
    probe.write_text("")
    fresh = tmp_path / "fresh.jsonl"
    assert dg("export", db, str(fresh)).returncode == 0
    assert fresh.stat().st_mode & 0o777 == probe.stat().st_mode & 0o777
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


# -- spec 12 shapes, seed counts -------------------------------------------------
def test_projection_status_json_has_the_spec_keys(backend_url: str) -> None:
    n = _imported(backend_url)
    done = dg("projection-status", backend_url, "--json", "--include-digests")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    spec_keys = {
        "digests",
        "event_count",
        "event_log_last_seq",
        "is_stale",
        "pending_events",
        "projected_last_seq",
        "trace_count",
    }
    assert spec_keys <= set(status)
    assert status["projected_last_seq"] == status["event_log_last_seq"] == n
    assert (status["pending_events"], status["is_stale"]) == (0, False)
    assert status["digests"] == load_golden("support")[1]
    assert "projections" in status  # the per-projection detail stays
    table = dg("projection-status", backend_url)
    assert table.returncode == 0 and not table.stdout.startswith("{")


def test_no_sub_command_prints_help_and_exits_1() -> None:
    done = dg()
    assert done.returncode == 1
    assert "Usage:" in done.stdout and "verify" in done.stdout


def test_seeding_again_says_nothing_new(tmp_path: Path) -> None:
    db = str(tmp_path / "seed.db")
    first = dg("seed", db, "--traces", "3")
    assert first.returncode == 0, first.stderr
    total = first.stdout.split("(")[1].split()[0]
    assert f"({total} events: {total} new, 0 already present)" in first.stdout
    second = dg("seed", db, "--traces", "3")
    assert f"({total} events: 0 new, {total} already present)" in second.stdout


def test_replay_refuses_positions_the_log_has_never_been_at(backend_url: str) -> None:
    events, expected = load_golden("dealdesk")
    assert dg("import", backend_url, str(GOLDEN_DIR / "dealdesk" / "events.json")).returncode == 0
    head = len(events)
    for position in ("-5", "-1", str(head + 1), "1000"):
        done = dg("replay", backend_url, "--json", "--to", position)
        assert done.returncode == 1, (position, done.stdout)
        assert done.stdout == ""  # no digests of a state that never was
        assert "DG_ERR_INVALID_ARGUMENT" in done.stderr and "to_log_seq" in done.stderr
    beyond = dg("replay", backend_url, "--to", str(head + 1)).stderr
    assert f"head of tenant default's log ({head})" in beyond
    assert replay_json(backend_url, "--to", str(head)) == expected
    assert replay_json(backend_url, "--to", "0") != expected  # the empty state


def test_unknown_projection_and_dead_letter_status_are_refused_with_the_valid_ones(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "refuse.db")
    assert dg("import", db, str(GOLDEN_DIR / "dealdesk" / "events.json")).returncode == 0
    rebuilt = dg("rebuild", db, "--projection", "nope", "--reason", "x")
    assert rebuilt.returncode == 1
    assert "DG_ERR_INVALID_ARGUMENT" in rebuilt.stderr and "'nope'" in rebuilt.stderr
    for name in ("context_graph", "trace_summary", "precedent_index", "policy_eval_index"):
        assert name in rebuilt.stderr
    with sqlite3.connect(db) as conn:  # refused before anything was audited
        assert conn.execute("SELECT COUNT(*) FROM dg_audit_log").fetchone() == (0,)
    listed = dg("dead-letters", "list", db, "--status", "bogus")
    assert listed.returncode == 1 and listed.stdout == ""
    assert "DG_ERR_INVALID_ARGUMENT" in listed.stderr and "'bogus'" in listed.stderr
    for status in ("open", "retry", "resolved", "skipped"):
        assert status in listed.stderr
        fine = dg("dead-letters", "list", db, "--status", status)
        assert fine.returncode == 0 and json.loads(fine.stdout) == []


def test_a_multi_line_last_error_is_one_line_in_the_status_table(tmp_path: Path) -> None:
    from decisiongraph.store.sqlite import SQLiteEventStore

    db = str(tmp_path / "status.db")
    assert dg("import", db, str(GOLDEN_DIR / "dealdesk" / "events.json")).returncode == 0
    error = (
        'DG_ERR_STORAGE: PostgreSQL error: syntax error at or near "x"\n'
        "LINE 1: SELECT x FROM\n"
        "               ^"
    )
    store = SQLiteEventStore(db)
    store.set_projection_error("default", "trace_summary", error)
    store.close()
    table = dg("projection-status", db)
    assert table.returncode == 0
    (line,) = [row for row in table.stdout.splitlines() if "last error" in row]
    assert line.endswith('syntax error at or near "x" LINE 1: SELECT x FROM ^')
    assert "LINE 1" not in table.stdout.replace(line, "")
    status = json.loads(dg("projection-status", db, "--json").stdout)
    (summary,) = [p for p in status["projections"] if p["projection"] == "trace_summary"]
    assert summary["last_error"] == error  # machines get it whole


# -- tenants: a typo never reads as an answer ------------------------------------
def _tenant_commands(db: str, out: Path) -> dict[str, list[str]]:
    """Every command that reads one tenant, with the arguments it needs."""
    return {
        "replay": ["replay", db],
        "compare": ["compare", db],
        "projection-status": ["projection-status", db, "--json"],
        "export": ["export", db, str(out)],
        "dump-trace": ["dump-trace", db, "some-trace"],
        "verify": ["verify", db],
        "rebuild": ["rebuild", db, "--projection", "context_graph", "--reason", "x"],
        "dead-letters list": ["dead-letters", "list", db],
        "dead-letters retry": ["dead-letters", "retry", db, "1", "--reason", "x"],
        "dead-letters skip": [
            "dead-letters",
            "skip",
            db,
            "1",
            "--reason",
            "x",
            "--confirm",
            "skip",
        ],
    }


def test_every_command_refuses_an_unknown_or_empty_tenant(backend_url: str, tmp_path: Path) -> None:
    _imported(backend_url)
    out = tmp_path / "export.jsonl"
    for name, args in _tenant_commands(backend_url, out).items():
        ghost = dg(*args, "--tenant", "ghost")
        assert ghost.returncode == 1, (name, ghost.stdout, ghost.stderr)
        assert ghost.stdout == "", name  # no "match", no digests, no table
        assert ghost.stderr.startswith("Error: DG_ERR_NOT_FOUND: tenant 'ghost' has no events"), (
            name,
            ghost.stderr,
        )
        empty = dg(*args, "--tenant", "")
        assert empty.returncode == 1 and empty.stdout == "", name
        assert empty.stderr.startswith("Error: DG_ERR_INVALID_ARGUMENT: tenant_id"), name
    assert not out.exists()  # export wrote no empty file
    # Commands that create a tenant still refuse a name that is not one.
    for args in (
        ["import", backend_url, str(GOLDEN_DIR / "support" / "events.json")],
        ["seed", backend_url, "--traces", "1"],
        ["worker", backend_url],
        ["accounts", "create", backend_url, "--name", "a", "--scope", "events:read"],
    ):
        done = dg(*args, "--tenant", " ")
        assert done.returncode == 1, (args, done.stderr)
        assert done.stderr.startswith("Error: DG_ERR_INVALID_ARGUMENT: tenant_id"), args
    # The real tenant is unaffected.
    assert dg("compare", backend_url, "--tenant", "default").stdout.strip() == "match"


def test_exit_codes_tell_usage_errors_from_integrity_problems(tmp_path: Path) -> None:
    db = str(tmp_path / "codes.db")
    _imported(db)
    typo = dg("verify", db, "--tnant", "default")
    assert typo.returncode == 2 and typo.stdout == ""
    assert typo.stderr.splitlines()[-1].startswith(
        "Error: DG_ERR_INVALID_ARGUMENT: No such option: --tnant"
    )
    assert "Usage: decisiongraph verify [OPTIONS] DB" in typo.stderr
    missing = dg("replay")
    assert missing.returncode == 2
    assert (
        missing.stderr.splitlines()[-1] == "Error: DG_ERR_INVALID_ARGUMENT: Missing argument 'DB'."
    )
    assert dg("dead-letters").returncode == 2  # a group without its sub-command
    raw = RawDatabase(db)
    try:
        raw.drop_append_only_guards()
        raw.execute("UPDATE dg_event_log SET occurred_at = 'x' WHERE log_seq = 2")
    finally:
        raw.close()
    tampered = dg("verify", db)
    assert tampered.returncode == 3 and "TAMPERED at log_seq 2" in tampered.stdout


ERROR_LINE = re.compile(r"^Error: DG_ERR_[A-Z_]+: \S")
# The three errors whose wording spec 12 fixes (codes follow where it allows).
SPEC_LINE = re.compile(
    r"^(Error: Database file '.+' not found|Error: '.+' is not a file"
    r"|Error (replaying projections|getting trace events): DG_ERR_[A-Z_]+: \S.*)$"
)


def test_every_error_is_one_line_with_a_code(tmp_path: Path) -> None:
    db = str(tmp_path / "errors.db")
    _imported(db)
    bad_file = tmp_path / "bad.jsonl"
    bad_file.write_text('{"not": "an event"}\n{oops\n')
    (tmp_path / "dir.db").mkdir()
    failures = {
        "missing database": ["replay", str(tmp_path / "nope.db")],
        "not a file": ["replay", str(tmp_path / "dir.db")],
        "missing directory": ["import", str(tmp_path / "no" / "x.db"), str(bad_file)],
        "unknown trace": ["dump-trace", db, "nope"],
        "bad events": ["import", db, str(bad_file)],
        "unreadable file": ["import", db, str(tmp_path / "none.json")],
        "export to a directory": ["export", db, str(tmp_path)],
        "bad position": ["replay", db, "--to", "99"],
        "blank reason": ["rebuild", db, "--projection", "context_graph", "--reason", " "],
        "unknown letter": ["dead-letters", "retry", db, "7", "--reason", "x"],
        "unconfirmed skip": ["dead-letters", "skip", db, "7", "--reason", "x"],
        "unknown key": ["accounts", "rotate", db, "nobody"],
        "missing worker database": ["worker", str(tmp_path / "nope.db")],
    }
    for name, args in failures.items():
        done = dg(*args)
        assert done.returncode == 1, (name, done.stderr)
        assert done.stderr, name
        for line in done.stderr.splitlines():
            assert ERROR_LINE.match(line) or SPEC_LINE.match(line), (name, line)
        assert "Traceback" not in done.stderr, name
    missing = dg("replay", str(tmp_path / "nope.db")).stderr
    assert missing == f"Error: Database file '{tmp_path / 'nope.db'}' not found\n"
    assert not (tmp_path / "nope.db").exists()


def _help(*command: str) -> str:
    done = dg(*command, "--help")
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_help_screens_read_cleanly() -> None:
    commands: list[tuple[str, ...]] = [
        (),
        ("import",),
        ("export",),
        ("replay",),
        ("projection-status",),
        ("dump-trace",),
        ("verify",),
        ("seed",),
        ("worker",),
        ("rebuild",),
        ("compare",),
        ("serve",),
        ("dead-letters",),
        ("dead-letters", "list"),
        ("dead-letters", "retry"),
        ("dead-letters", "skip"),
        ("accounts",),
        ("accounts", "create"),
        ("accounts", "list"),
        ("accounts", "rotate"),
        ("accounts", "revoke"),
    ]
    for command in commands:
        text = _help(*command)
        for leftover in ("<str>", "<bool>", "<int>", "<list", "{db}", "{DB}", "<float>"):
            assert leftover not in text, (command, leftover, text)
    rebuild = _help("rebuild")
    assert "Usage: decisiongraph rebuild [OPTIONS] DB" in rebuild
    (reason,) = [line for line in rebuild.splitlines() if "--reason" in line]
    assert "--reason TEXT" in reason and "[required]" in reason
    assert re.search(r"--json\s+One JSON", _help("replay"))  # a flag has no value placeholder
    assert "Exit codes: 0 ok, 1 error, 2 usage error, 3 integrity problem" in _help()
    serve = _help("serve")
    assert "env var: DG_DB" in serve
    for name in (
        "DG_DB",
        "DG_REDIS_URL",
        "DG_RATE_WRITE",
        "DG_RATE_READ",
        "DG_RATE_ADMIN",
        "DG_MAX_BODY_BYTES",
        "DG_STORE_POOL",
        "DG_STREAM_HEARTBEAT",
        "DG_NOTIFY",
    ):
        assert re.search(rf"^\s+{name}\s", serve, flags=re.M), name


def test_operator_actions_are_audited_as_the_os_user_at_the_host(tmp_path: Path) -> None:
    db = str(tmp_path / "actor.db")
    _imported(db)
    assert dg("rebuild", db, "--projection", "trace_summary", "--reason", "drill").returncode == 0
    named = dg(
        "rebuild", db, "--projection", "trace_summary", "--reason", "again", "--actor", "alice"
    )
    assert named.returncode == 0, named.stderr
    with sqlite3.connect(db) as conn:
        actors = [row[0] for row in conn.execute("SELECT actor FROM dg_audit_log ORDER BY id")]
    assert actors[0] == f"cli:{getpass.getuser()}@{socket.gethostname()}"
    assert actors[-1] == "alice"


# -- serve ----------------------------------------------------------------------------
@contextmanager
def _serving(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``serve --port 0`` (any free port); yields its startup line once printed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "decisiongraph", "serve", "--port", "0", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # blocks until listening (or exit: "")
        assert line, "serve printed no startup line"
        yield line.rstrip("\n"), process
    finally:
        process.terminate()
        process.wait(30)
        if process.stdout is not None:
            process.stdout.close()


def _url(line: str) -> str:
    match = re.search(r"listening on (http://\S+?);", line)
    assert match, line
    return match.group(1)


def test_serve_says_where_it_listens_and_honours_dg_db(tmp_path: Path) -> None:
    db = tmp_path / "from-env.db"
    with _serving(env={"DG_DB": str(db)}, cwd=tmp_path) as (line, _):
        assert line.startswith("DecisionGraph API listening on http://127.0.0.1:")
        assert f"SQLite {db} (created new database)" in line
        assert "projection workers in-process" in line
        assert httpx.get(f"{_url(line)}/healthz", timeout=10).status_code == 200
    assert db.exists() and not (tmp_path / "decisiongraph.db").exists()
    with _serving("--db", str(db), "--no-workers") as (line, _):
        assert f"SQLite {db};" in line and "created" not in line
        assert "not in this process" in line


def test_serve_on_postgresql_names_no_credentials(pg_url: str) -> None:
    parts = urlsplit(pg_url)
    password = parts.password or "s3cret"  # trust authentication ignores it
    port = f":{parts.port}" if parts.port else ""
    netloc = f"{parts.username or 'postgres'}:{password}@{parts.hostname}{port}"
    with _serving("--db", urlunsplit(parts._replace(netloc=netloc))) as (line, _):
        assert "PostgreSQL " in line and "not in this process" in line
        assert httpx.get(f"{_url(line)}/healthz", timeout=10).status_code == 200
    assert password not in line


def test_serve_refuses_bad_settings_and_a_busy_port_cleanly(tmp_path: Path) -> None:
    db = tmp_path / "never.db"
    cases = {
        "DG_MAX_BODY_BYTES": (
            "1e6",
            "DG_MAX_BODY_BYTES must be an integer number of bytes, not '1e6'",
        ),
        "DG_RATE_READ": ("abc", "DG_RATE_READ must be a number of requests/s"),
        "DG_STORE_POOL": ("0", "DG_STORE_POOL must be at least 1 connections"),
        "DG_STREAM_HEARTBEAT": ("nan", "DG_STREAM_HEARTBEAT must be a number of seconds"),
    }
    for name, (value, message) in cases.items():
        done = subprocess.run(
            [sys.executable, "-m", "decisiongraph", "serve", "--db", str(db), "--port", "0"],
            env={**os.environ, name: value},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1, (name, done.stderr)
        assert done.stdout == ""
        assert done.stderr.startswith(f"Error: DG_ERR_INVALID_ARGUMENT: {message}"), done.stderr
        assert len(done.stderr.splitlines()) == 1, done.stderr  # no traceback
    assert not db.exists()  # refused before anything was created
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = dg("serve", "--db", str(db), "--port", str(port))
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == (
        f"Error: DG_ERR_INVALID_ARGUMENT: port {port} on 127.0.0.1 is already in use; "
        "choose another with --port\n"
    )
