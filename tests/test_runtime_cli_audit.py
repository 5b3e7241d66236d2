"""Fixes from the runtime/CLI audit: foreign databases, worker timings, dead
letter ids and tenants, blank actors, DG_NOTIFY spellings, wait_for arguments.

Every test runs the real command (a subprocess) or the real store, on real
SQLite files and a throw-away PostgreSQL database.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from decisiongraph import DecisionGraph
from decisiongraph.core.envelope import envelope_from_dict
from decisiongraph.core.errors import InvalidArgumentError, NotFoundError, StorageError
from decisiongraph.sdk.async_client import AsyncClient
from decisiongraph.sdk.client import Client
from decisiongraph.store import foreign_tables
from decisiongraph.store.postgres import NOTIFY_CHANNEL, PostgresEventStore
from decisiongraph.store.sql_base import SqlEventStore
from decisiongraph.store.sqlite import SQLiteEventStore
from tests.conftest import GOLDEN_DIR, load_golden
from tests.test_cli import ERROR_LINE, _tenant_commands, dg

FOREIGN = "is not a DecisionGraph database (it holds other tables)"


def _open(db: str) -> SqlEventStore:
    return PostgresEventStore(db) if db.startswith("postgresql://") else SQLiteEventStore(db)


def _import(db: str, tenant: str = "default", scenario: str = "support") -> None:
    done = dg("import", db, str(GOLDEN_DIR / scenario / "events.json"), "--tenant", tenant)
    assert done.returncode == 0, done.stderr


def _one_error(done: subprocess.CompletedProcess[str], code: str) -> str:
    """The single error line of a failed command (exit 1, no traceback)."""
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert ERROR_LINE.match(lines[0]) and lines[0].startswith(f"Error: {code}: "), lines[0]
    return lines[0]


# -- 1. another application's database is refused, not migrated ----------------
def _commands(db: str, tmp_path: Path) -> dict[str, list[str]]:
    """Every command that opens a database: those reading a tenant, and more."""
    events = str(GOLDEN_DIR / "support" / "events.json")
    return {
        **_tenant_commands(db, tmp_path / "out.jsonl"),
        "accounts list": ["accounts", "list", db],
        "accounts rotate": ["accounts", "rotate", db, "nobody"],
        "import": ["import", db, events],
        "seed": ["seed", db, "--traces", "1"],
        "accounts create": [
            *("accounts", "create", db, "--name", "a", "--tenant", "t", "--scope", "admin"),
        ],
        "worker": ["worker", db],
    }


def _snapshot(directory: Path) -> dict[str, str]:
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in directory.iterdir()
    }


@pytest.mark.parametrize("journal", ["delete", "wal"])
def test_every_command_refuses_a_foreign_sqlite_file_and_writes_nothing(
    tmp_path: Path, journal: str
) -> None:
    home = tmp_path / "data"
    home.mkdir()
    db = str(home / "foreign.db")
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA journal_mode = {journal}")
        conn.execute("CREATE TABLE people (id INTEGER)")
        conn.execute("INSERT INTO people VALUES (1)")
    conn.close()
    before = _snapshot(home)
    assert list(before) == ["foreign.db"]
    for name, args in _commands(db, tmp_path).items():
        line = _one_error(dg(*args), "DG_ERR_INVALID_ARGUMENT")
        assert line == f"Error: DG_ERR_INVALID_ARGUMENT: '{db}' {FOREIGN}", name
        assert _snapshot(home) == before, name  # not a byte, not a -wal or -shm file
    serve = subprocess.run(
        [sys.executable, "-m", "decisiongraph", "serve", "--db", db, "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert _one_error(serve, "DG_ERR_INVALID_ARGUMENT").endswith(FOREIGN)
    assert _snapshot(home) == before
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == (journal,)
        names = [row[0] for row in conn.execute("SELECT name FROM sqlite_master")]
    conn.close()
    assert names == ["people"]


def test_empty_new_and_own_sqlite_databases_are_still_opened(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()  # a zero-byte file is an empty database, ours to create
    assert dg("seed", str(empty), "--traces", "1").returncode == 0
    assert dg("verify", str(empty)).returncode == 0
    fresh = str(tmp_path / "fresh.db")
    _import(fresh)
    # A database of ours that also holds someone's table is still ours.
    with sqlite3.connect(fresh) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
    conn.close()
    assert foreign_tables(fresh) == []
    assert dg("projection-status", fresh).returncode == 0
    not_sqlite = tmp_path / "notes.txt"
    not_sqlite.write_text("not a database at all, just some text " * 20)
    with pytest.raises(StorageError, match="file is not a database"):
        foreign_tables(not_sqlite)


def _pg_tables(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1"
        ).fetchall()
    return [row[0] for row in rows]


def test_a_foreign_postgresql_database_is_refused_and_left_alone(
    pg_url: str, tmp_path: Path
) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE people (id integer)")
    commands = _commands(pg_url, tmp_path)
    for name in ("projection-status", "dead-letters list", "verify", "worker", "seed", "import"):
        line = _one_error(dg(*commands[name]), "DG_ERR_INVALID_ARGUMENT")
        assert line.endswith(f"/{pg_url.rsplit('/', 1)[1]}' {FOREIGN}"), (name, line)
        assert _pg_tables(pg_url) == ["people"], name


def test_the_refusal_names_no_postgresql_password(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE people (id integer)")
    scheme, rest = pg_url.split("://", 1)
    user_host, database = rest.split("/", 1)
    host = user_host.rsplit("@", 1)[-1]
    secret = f"{scheme}://postgres:s3cret@{host}/{database}?application_name=s3cret"
    line = _one_error(dg("verify", secret), "DG_ERR_INVALID_ARGUMENT")
    assert "s3cret" not in line
    assert line == (
        f"Error: DG_ERR_INVALID_ARGUMENT: '{scheme}://postgres@{host}/{database}' {FOREIGN}"
    )


def test_an_empty_postgresql_database_with_an_extension_is_still_ours(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        available = conn.execute(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'pg_buffercache'"
        ).fetchone()
        if available is None:
            pytest.skip("pg_buffercache is not installed on this server")
        conn.execute("CREATE EXTENSION pg_buffercache")  # a view in the current schema
    assert foreign_tables(pg_url) == []
    assert dg("seed", pg_url, "--traces", "1").returncode == 0
    assert "dg_event_log" in _pg_tables(pg_url)
    assert dg("projection-status", pg_url).returncode == 0


# -- 2. worker timings that would spin or never let go ---------------------------
@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--poll-interval", "0"),
        ("--poll-interval", "-1"),
        ("--poll-interval", "nan"),
        ("--poll-interval", "0.001"),
        ("--poll-interval", "1e12"),
        ("--lease-ttl", "0"),
        ("--lease-ttl", "-5"),
        ("--lease-ttl", "inf"),
        ("--lease-ttl", "nan"),
        ("--lease-ttl", "0.5"),
    ],
)
def test_worker_refuses_timings_that_spin_or_never_expire(
    tmp_path: Path, option: str, value: str
) -> None:
    db = str(tmp_path / "worker.db")
    _import(db)
    done = subprocess.run(
        [sys.executable, "-m", "decisiongraph", "worker", db, option, value],
        capture_output=True,
        text=True,
        timeout=60,  # a worker that started would run until killed
    )
    assert done.returncode == 2, done.stderr  # a usage error, as --connections 0 is
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"Error: DG_ERR_INVALID_ARGUMENT: {option} must be a number of seconds")


# -- 3. dead letter ids beyond 64 bits ---------------------------------------------
@pytest.mark.parametrize("letter_id", [2**63, 2**64 + 5, -(2**63) - 1])
def test_an_id_beyond_64_bits_is_not_found_on_both_backends(
    backend_url: str, letter_id: int
) -> None:
    _import(backend_url)
    for action in (["retry"], ["skip", "--confirm", "skip"]):
        # "--" ends the options, so that a negative id is not read as one.
        args = ["dead-letters", *action[:1], backend_url, "--reason", "x", *action[1:]]
        done = dg(*args, "--", str(letter_id))
        assert _one_error(done, "DG_ERR_NOT_FOUND").endswith(f"No dead letter {letter_id}")
    store = _open(backend_url)
    try:
        with pytest.raises(NotFoundError, match=f"No dead letter {letter_id}"):
            store.get_dead_letter("default", letter_id)
        assert store.dead_letter_tenant(letter_id) is None
    finally:
        store.close()


# -- 4. and 5. who acted, and whose letter it is -------------------------------------
def _letter(db: str, tenant: str) -> int:
    """A dead letter of ``tenant`` at its first event (as a worker would park it)."""
    store = _open(db)
    try:
        first = store.list_events(tenant, limit=1)[0]
        letter = store.add_dead_letter(
            tenant,
            "context_graph",
            first.log_seq,
            first.event_id,
            "DG_ERR_STORAGE",
            "poison",
            1,
            first.recorded_at,
        )
        return letter.id
    finally:
        store.close()


def _audit_actors(db: str, tenant: str) -> list[str]:
    store = _open(db)
    try:
        return [entry.actor for entry in store.audit_log(tenant)]
    finally:
        store.close()


def test_a_blank_actor_is_refused_and_never_audited(backend_url: str) -> None:
    _import(backend_url)
    letter_id = _letter(backend_url, "default")
    for blank in ("", "   ", "\t"):
        for args in (
            ["rebuild", backend_url, "--projection", "trace_summary", "--reason", "drill"],
            ["dead-letters", "retry", backend_url, str(letter_id), "--reason", "fixed"],
        ):
            line = _one_error(dg(*args, "--actor", blank), "DG_ERR_INVALID_ARGUMENT")
            assert line.endswith("--actor must not be blank"), line
    assert _audit_actors(backend_url, "default") == []
    store = _open(backend_url)
    try:
        with pytest.raises(InvalidArgumentError, match="actor"):
            store.record_audit("default", actor="  ", action="x", target="y", reason="z")
        with pytest.raises(InvalidArgumentError, match="actor"):
            store.resolve_dead_letter("default", letter_id, action="retry", actor=" ", reason="r")
        assert store.get_dead_letter("default", letter_id).status == "open"  # nothing changed
    finally:
        store.close()
    assert _audit_actors(backend_url, "default") == []
    named = dg(
        *("dead-letters", "retry", backend_url, str(letter_id), "--reason", "fixed"),
        *("--actor", "  alice  "),
    )
    assert named.returncode == 0, named.stderr
    assert _audit_actors(backend_url, "default") == ["alice"]


def test_a_letter_of_another_tenant_says_so(backend_url: str) -> None:
    _import(backend_url, "acme")
    _import(backend_url, "globex", "dealdesk")
    letter_id = _letter(backend_url, "acme")
    wrong = dg(
        "dead-letters", "retry", backend_url, str(letter_id), "--reason", "x", "--tenant", "globex"
    )
    assert _one_error(wrong, "DG_ERR_NOT_FOUND") == (
        f"Error: DG_ERR_NOT_FOUND: dead letter {letter_id} belongs to tenant 'acme', "
        "not to tenant 'globex' (pass --tenant acme)"
    )
    # Without --tenant: the default tenant has no events, and the letter is acme's.
    default = dg("dead-letters", "retry", backend_url, str(letter_id), "--reason", "x")
    assert "belongs to tenant 'acme', not to tenant 'default'" in _one_error(
        default, "DG_ERR_NOT_FOUND"
    )
    store = _open(backend_url)
    try:
        # The store's own message reaches API callers: it names only the tenant asked.
        with pytest.raises(NotFoundError) as refused:
            store.get_dead_letter("globex", letter_id)
        assert refused.value.message == (
            f"Dead letter {letter_id} belongs to another tenant, not to tenant 'globex'"
        )
        assert "acme" not in str(refused.value.details)
        with pytest.raises(NotFoundError, match=f"No dead letter {letter_id + 1}$"):
            store.get_dead_letter("globex", letter_id + 1)
        assert store.get_dead_letter("acme", letter_id).status == "open"
    finally:
        store.close()
    unknown = dg(
        "dead-letters",
        "retry",
        backend_url,
        str(letter_id + 1),
        "--reason",
        "x",
        "--tenant",
        "acme",
    )
    assert _one_error(unknown, "DG_ERR_NOT_FOUND").endswith(f"No dead letter {letter_id + 1}")


# -- 6. DG_NOTIFY spellings ------------------------------------------------------------
def _notified(pg_url: str) -> bool:
    """Whether an append sends a NOTIFY: a marker sent after the append's
    commit arrives after any notification of it (one queue, commit order)."""
    event = envelope_from_dict(load_golden("support")[0][0])
    store = PostgresEventStore(pg_url)
    try:
        with psycopg.connect(pg_url, autocommit=True) as listener:
            listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
            store.append("default", [event])
            listener.execute("SELECT pg_notify(%s, 'marker')", (NOTIFY_CHANNEL,))
            received = []
            for note in listener.notifies(timeout=30):
                received.append(note.payload)
                if note.payload == "marker":
                    break
    finally:
        store.close()
    assert received[-1] == "marker", received
    return received != ["marker"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("off", False), ("FALSE", False), (" No ", False), ("0", False), ("On", True), ("yes", True)],
)
def test_dg_notify_understands_the_usual_switch_spellings(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, value: str, expected: bool
) -> None:
    monkeypatch.setenv("DG_NOTIFY", value)
    assert _notified(pg_url) is expected


@pytest.mark.parametrize("value", ["maybe", "2", "disable", "of"])
def test_dg_notify_refuses_what_it_does_not_understand(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("DG_NOTIFY", value)
    # Refused before connecting: port 1 would otherwise fail with DG_ERR_STORAGE.
    with pytest.raises(InvalidArgumentError, match=f"DG_NOTIFY must be one of .*'{value}'"):
        PostgresEventStore("postgresql://postgres@127.0.0.1:1/none")


def test_a_cli_command_with_a_bad_dg_notify_is_one_line(pg_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "decisiongraph", "projection-status", pg_url],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DG_NOTIFY": "sometimes"},
    )
    assert "DG_NOTIFY must be one of" in _one_error(done, "DG_ERR_INVALID_ARGUMENT")


# -- 7. wait_for arguments ---------------------------------------------------------------
BAD_WAITS: list[tuple[Any, Any, str]] = [
    ("5", 1.0, "log_seq"),
    (None, 1.0, "log_seq"),
    (-1, 1.0, "log_seq"),
    (True, 1.0, "log_seq"),
    (2.0, 1.0, "log_seq"),
    (0, math.nan, "timeout"),
    (0, math.inf, "timeout"),
    (0, -1.0, "timeout"),
    (0, "1", "timeout"),
    (0, None, "timeout"),
]


@pytest.mark.parametrize(("log_seq", "timeout", "field"), BAD_WAITS)
def test_library_wait_for_refuses_bad_arguments(
    tmp_path: Path, log_seq: Any, timeout: Any, field: str
) -> None:
    graph = DecisionGraph(tmp_path / "wait.db")
    try:
        with pytest.raises(InvalidArgumentError, match=f": {field} must be") as refused:
            graph.wait_for(log_seq, timeout=timeout)
        assert refused.value.details == {"field": field}
        assert graph.wait_for(0, timeout=0) is True
    finally:
        graph.close()


@pytest.mark.parametrize(("log_seq", "timeout", "field"), BAD_WAITS)
def test_sdk_wait_for_refuses_bad_arguments_before_any_request(
    log_seq: Any, timeout: Any, field: str
) -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(500)

    client = Client("http://dg.invalid", "dgk_x_y", transport=httpx.MockTransport(handler))
    try:
        with pytest.raises(InvalidArgumentError, match=f": {field} must be"):
            client.wait_for(log_seq, timeout=timeout)
    finally:
        client.close()

    async def run() -> None:
        remote = AsyncClient("http://dg.invalid", "dgk_x_y", transport=httpx.MockTransport(handler))
        try:
            with pytest.raises(InvalidArgumentError, match=f": {field} must be"):
                await remote.wait_for(log_seq, timeout=timeout)
        finally:
            await remote.close()

    asyncio.run(run())
    assert sent == []
