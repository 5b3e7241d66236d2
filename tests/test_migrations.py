"""A database made by an older release is upgraded in place when opened:
the migrations it lacks are applied once, and its events, projections and
digests come through unchanged. Both backends."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import replace

import psycopg
import pytest

from decisiongraph.core.errors import DUPLICATE_EVENT_ID, StorageError
from decisiongraph.store import migrations, open_store
from decisiongraph.store.sql_base import SqlEventStore
from tests.runtime.support import T, assert_exactly_once, open_sql, seeded
from tests.test_tamper import RawDatabase

SLIM_EDGES = 8  # the migration that dropped edge_id from the edge-walk indexes
#: SQLite's narrow log keys, which today's append code writes: an "older"
#: database for the tests of other migrations keeps them (they touch nothing
#: else), and :func:`test_an_older_sqlite_log_gets_narrow_keys` tests them.
NARROW_LOG_KEYS = 10


def _without(version: int) -> Callable[[str], list[tuple[int, str, str]]]:
    """``migration_files`` as a release before ``version`` had them, except
    the log's narrow keys, which today's appends need."""
    everything = migrations.migration_files

    def older(backend: str) -> list[tuple[int, str, str]]:
        return [m for m in everything(backend) if m[0] < version or m[0] >= NARROW_LOG_KEYS]

    return older


def _edge_index_columns(store: SqlEventStore) -> dict[str, list[str]]:
    with store._read() as cur:
        if store.placeholder == "?":  # SQLite
            return {
                name: [row[2] for row in cur.execute(f"PRAGMA index_info('{name}')").fetchall()]
                for name in ("idx_cg_edges_from", "idx_cg_edges_to")
            }
        rows = cur.execute(
            "SELECT indexname, indexdef FROM pg_indexes "
            "WHERE indexname IN ('idx_cg_edges_from', 'idx_cg_edges_to')"
        ).fetchall()
        return {
            name: [col.strip() for col in definition.split("(", 1)[1].rstrip(")").split(",")]
            for name, definition in rows
        }


def test_an_older_database_is_upgraded_and_keeps_its_digests(
    backend_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    before_slim_edges = _without(SLIM_EDGES)
    monkeypatch.setattr("decisiongraph.store.sqlite.migration_files", before_slim_edges)
    monkeypatch.setattr("decisiongraph.store.postgres.migration_files", before_slim_edges)
    old = open_sql(backend_url)
    try:
        old.append(T, seeded(30, seed=4))
        old.project_pending(T)
        assert "edge_id" in _edge_index_columns(old)["idx_cg_edges_from"]
        digests = old.digests(T)
        edges = list(old.iter_edges(T))
    finally:
        old.close()

    monkeypatch.undo()
    new = open_sql(backend_url)
    try:
        columns = _edge_index_columns(new)
        assert columns == {
            "idx_cg_edges_from": ["tenant_id", "from_node_id", "log_seq"],
            "idx_cg_edges_to": ["tenant_id", "to_node_id", "log_seq"],
        }
        assert new.digests(T) == digests
        assert list(new.iter_edges(T)) == edges
        resent = new.append(T, seeded(30, seed=4))  # an agent's retries after the upgrade
        assert all(event.repeated for event in resent)
        new.append(T, seeded(5, seed=9))  # and new work, projected through the new indexes
        new.project_pending(T)
        assert_exactly_once(new)
        latest = new.digests(T)
        assert latest != digests
    finally:
        new.close()
    reopened = open_sql(backend_url)  # applied once: opening again changes nothing
    try:
        assert reopened.digests(T) == latest
    finally:
        reopened.close()


AUDIT_APPEND_ONLY = 9  # the migration that put append-only triggers on dg_audit_log


def _audit_edits_refused(url: str) -> None:
    """An UPDATE and a DELETE of an audit entry, behind the store's back, both fail
    and leave the entry as it was."""
    raw = RawDatabase(url)
    try:
        for statement in (
            "UPDATE dg_audit_log SET reason = 'nothing to see'",
            "DELETE FROM dg_audit_log",
        ):
            with pytest.raises((sqlite3.DatabaseError, psycopg.Error), match="append_only"):
                raw.execute(statement)
        assert raw.one("SELECT reason FROM dg_audit_log") == ("drill",)
    finally:
        raw.close()


def test_the_audit_log_refuses_updates_and_deletes(backend_url: str) -> None:
    store = open_sql(backend_url)
    try:
        store.record_audit(T, actor="ops", action="projection.rebuild", target="x", reason="drill")
    finally:
        store.close()
    _audit_edits_refused(backend_url)


def test_an_older_database_gets_the_audit_log_guards(
    backend_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    before_audit_guards = _without(AUDIT_APPEND_ONLY)
    monkeypatch.setattr("decisiongraph.store.sqlite.migration_files", before_audit_guards)
    monkeypatch.setattr("decisiongraph.store.postgres.migration_files", before_audit_guards)
    old = open_sql(backend_url)
    try:
        old.record_audit(T, actor="ops", action="projection.rebuild", target="x", reason="old")
    finally:
        old.close()
    raw = RawDatabase(backend_url)
    try:  # the old schema let the entry be edited: the hole this migration closes
        raw.execute("UPDATE dg_audit_log SET reason = 'drill'")
    finally:
        raw.close()
    monkeypatch.undo()
    open_sql(backend_url).close()  # opening upgrades in place
    _audit_edits_refused(backend_url)


def _log_indexes(path: str) -> dict[str, list[str]]:
    raw = sqlite3.connect(path)
    try:
        names = [
            row[0]
            for row in raw.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' "
                "AND tbl_name = 'dg_event_log' AND name LIKE 'idx_%' ORDER BY name"
            )
        ]
        return {
            name: [row[2] for row in raw.execute(f"PRAGMA index_info('{name}')")] for name in names
        }
    finally:
        raw.close()


def _as_before_narrow_keys(path: str) -> None:
    """Turn a database back into what releases before the narrow log keys
    made: unique text indexes on the ids and keys, no digest columns."""
    raw = sqlite3.connect(path, isolation_level=None)
    try:
        for statement in (
            "DROP INDEX idx_event_log_event_key",
            "DROP INDEX idx_event_log_idem_key",
            "ALTER TABLE dg_event_log DROP COLUMN event_key",
            "ALTER TABLE dg_event_log DROP COLUMN idem_key",
            "CREATE UNIQUE INDEX idx_event_log_event_id ON dg_event_log (tenant_id, event_id)",
            "CREATE UNIQUE INDEX idx_event_log_idempotency "
            "ON dg_event_log (tenant_id, producer_id, idempotency_key)",
            f"DELETE FROM schema_migrations WHERE version = {NARROW_LOG_KEYS}",
        ):
            raw.execute(statement)
    finally:
        raw.close()


@pytest.mark.parametrize("colliding", [False, True], ids=["digests", "colliding-digests"])
def test_an_older_sqlite_log_gets_narrow_keys(
    sqlite_path: str, colliding: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The digests are computed for the rows already stored, so retries of
    events appended before the upgrade are still recognised, and their ids
    are still taken; rows whose digests collide are stored with NULL ones
    (here every digest collides) and found all the same."""
    old = open_sql(sqlite_path)
    try:
        old.append(T, seeded(30, seed=4))
        old.append("other", seeded(3, seed=4))  # the same ids and keys, another tenant
        old.project_pending(T)
        digests = old.digests(T)
        stored = old.list_events(T, limit=1)[0]
    finally:
        old.close()
    _as_before_narrow_keys(sqlite_path)
    assert "idx_event_log_event_id" in _log_indexes(sqlite_path)
    auditor = open_store(sqlite_path, read_only=True)  # cannot upgrade: still verifies
    try:
        assert auditor.verify_chain(T) is None
    finally:
        auditor.close()
    if colliding:
        monkeypatch.setattr("decisiongraph.store.log_keys.event_digest", lambda *parts: 7)
        monkeypatch.setattr("decisiongraph.store.log_keys.idem_digest", lambda *parts: 7)

    new = open_sql(sqlite_path)
    try:
        indexes = _log_indexes(sqlite_path)
        assert indexes["idx_event_log_event_key"] == ["event_key"]
        assert indexes["idx_event_log_idem_key"] == ["idem_key"]
        assert "idx_event_log_event_id" not in indexes
        assert "idx_event_log_idempotency" not in indexes
        assert new.digests(T) == digests
        assert new.verify_chain(T) is None  # the chain does not cover the digests
        resent = new.append(T, seeded(30, seed=4))
        assert all(event.repeated for event in resent)
        assert [event.log_seq for event in resent] == list(range(1, len(resent) + 1))
        taken = replace(
            seeded(1, seed=77)[0],
            event_id=stored.event_id,  # an id stored before the upgrade
        )
        with pytest.raises(StorageError) as refused:
            new.append(T, [taken])
        assert refused.value.details["reason"] == DUPLICATE_EVENT_ID
        assert new.get_last_log_seq(T) == len(resent)
        assert new.get_last_log_seq("other") > 0
    finally:
        new.close()
    raw = sqlite3.connect(sqlite_path)
    try:
        rows, missing = raw.execute(
            "SELECT COUNT(*), SUM(event_key IS NULL) + SUM(idem_key IS NULL) FROM dg_event_log"
        ).fetchone()
    finally:
        raw.close()
    # Colliding, the first row keeps each shared digest and the others have none.
    assert missing == (2 * (rows - 1) if colliding else 0)
