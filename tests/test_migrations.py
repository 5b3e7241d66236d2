"""A database made by an older release is upgraded in place when opened:
the migrations it lacks are applied once, and its events, projections and
digests come through unchanged. Both backends."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest

from decisiongraph.store import migrations
from decisiongraph.store.sql_base import SqlEventStore
from tests.runtime.support import T, assert_exactly_once, open_sql, seeded
from tests.test_tamper import RawDatabase

SLIM_EDGES = 8  # the migration that dropped edge_id from the edge-walk indexes


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
    everything = migrations.migration_files

    def before_slim_edges(backend: str) -> list[tuple[int, str, str]]:
        return [m for m in everything(backend) if m[0] < SLIM_EDGES]

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
    everything = migrations.migration_files

    def before_audit_guards(backend: str) -> list[tuple[int, str, str]]:
        return [m for m in everything(backend) if m[0] < AUDIT_APPEND_ONLY]

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
