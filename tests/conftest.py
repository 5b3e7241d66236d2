"""Shared fixtures: real SQLite files and a throw-away PostgreSQL database.

PostgreSQL tests create their own database on the server named by
``DG_TEST_PG_URL`` (default: the local trust-auth server) and drop it after.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from decisiongraph.store import EventStore, open_store
from decisiongraph.store.postgres import is_postgres_url
from tests.runtime.poison import POISON, Poisoned, raw_sql, set_payload
from tests.runtime.support import T, open_sql, seeded

PG_ADMIN_URL = os.environ.get("DG_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
GOLDEN_DIR = Path(
    os.environ.get(
        "DG_GOLDEN_DIR", Path(__file__).resolve().parents[2] / "shared" / "reference" / "golden"
    )
)
if not GOLDEN_DIR.is_dir():  # say what is missing, not a traceback from collection
    pytest.exit(
        f"The golden scenarios are not at {GOLDEN_DIR}: the tests need the reference "
        "scenarios beside the repository (../shared/reference/golden) or DG_GOLDEN_DIR "
        "naming them",
        returncode=4,
    )
GOLDEN_SCENARIOS = sorted(p.name for p in GOLDEN_DIR.iterdir() if (p / "events.json").exists())


def load_golden(scenario: str) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The scenario's events and its expected digests."""
    events = json.loads((GOLDEN_DIR / scenario / "events.json").read_text("utf-8"))["events"]
    expected = {}
    for line in (GOLDEN_DIR / scenario / "expected_digest.txt").read_text("utf-8").splitlines():
        name, _, value = line.partition(":")
        expected[name] = value
    return events, expected


def _pg_url(name: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards."""
    name = f"dg_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _pg_url(name)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_path(tmp_path: Path) -> str:
    return str(tmp_path / "dg.db")


@pytest.fixture(params=["sqlite", "postgres"])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty store on each backend in turn."""
    if request.param == "sqlite":
        yield str(tmp_path / "dg.db")
    else:
        yield request.getfixturevalue("pg_url")


@pytest.fixture
def store(backend_url: str) -> Iterator[EventStore]:
    opened = open_store(backend_url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def poisoned(backend_url: str) -> Iterator[Poisoned]:
    """A seeded log whose event at ``POISON`` no longer matches its hash
    (see :mod:`tests.runtime.poison`)."""
    store = open_sql(backend_url)
    events = seeded(20, seed=21)
    store.append(T, events)
    assert events[POISON - 1].event_type == "InputObserved"
    ((original, event_id),) = raw_sql(
        backend_url,
        "SELECT payload_json, event_id FROM dg_event_log WHERE tenant_id = ? AND log_seq = ?",
        (T, POISON),
    )
    if is_postgres_url(backend_url):
        raw_sql(backend_url, "DROP TRIGGER dg_event_log_append_only ON dg_event_log")
    else:
        raw_sql(backend_url, "DROP TRIGGER dg_event_log_no_update")
    assert original.startswith("{") and original != "{}"
    set_payload(backend_url, POISON, original[:-1] + ',"tampered":true}')
    try:
        yield Poisoned(backend_url, store, original, event_id, [e.trace_id for e in events])
    finally:
        store.close()
