"""A store refuses to migrate another application's database, whoever opens
it: the library (``DecisionGraph``, ``open_store``), not only the CLI."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from decisiongraph import DecisionGraph
from decisiongraph.core.errors import InvalidArgumentError
from decisiongraph.store import open_store
from decisiongraph.store.postgres import PostgresEventStore
from decisiongraph.store.sqlite import SQLiteEventStore


def _someone_elses(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO people (name) VALUES ('ada')")
    conn.close()


def test_a_foreign_sqlite_file_is_refused_by_the_library_and_left_as_it_was(
    tmp_path: Path,
) -> None:
    db = tmp_path / "app.db"
    _someone_elses(db)
    before = db.read_bytes()
    for opener in (DecisionGraph, open_store, SQLiteEventStore):
        with pytest.raises(InvalidArgumentError) as caught:
            opener(str(db))
        assert caught.value.code == "DG_ERR_INVALID_ARGUMENT"
        assert "is not a DecisionGraph database" in caught.value.message
        assert caught.value.details["tables"] == ["people"]
    assert db.read_bytes() == before  # not even switched to WAL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.db"]


def test_new_empty_and_own_sqlite_databases_open(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    with DecisionGraph(str(empty)) as dg:
        assert dg.store.log_stats("default").event_count == 0
    with DecisionGraph(str(tmp_path / "new.db")) as dg:
        assert dg.store.log_stats("default").event_count == 0
    # Ours, with a table of someone's added later: still ours.
    with sqlite3.connect(empty) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
    conn.close()
    with DecisionGraph(str(empty)) as dg:
        assert dg.store.log_stats("default").event_count == 0
    with DecisionGraph(":memory:") as dg:
        assert dg.store.log_stats("default").event_count == 0


def test_a_foreign_postgresql_database_is_refused_by_the_library(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE people (id integer)")
    scheme, rest = pg_url.split("://", 1)
    secret = f"{scheme}://postgres:s3cret@{rest.rsplit('@', 1)[-1]}"
    for opener in (DecisionGraph, open_store, PostgresEventStore):
        with pytest.raises(InvalidArgumentError) as caught:
            opener(secret)
        assert caught.value.details["tables"] == ["people"]
        assert "s3cret" not in caught.value.message
    with psycopg.connect(pg_url) as conn:
        names = [
            row[0]
            for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ]
    assert names == ["people"]


def test_a_schema_of_its_own_shares_a_postgresql_database(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE people (id integer)")
        conn.execute("CREATE SCHEMA decisiongraph")
    separator = "&" if "?" in pg_url else "?"
    own = f"{pg_url}{separator}options=-csearch_path%3Ddecisiongraph"
    with DecisionGraph(own) as dg:
        assert dg.store.log_stats("default").event_count == 0
    with psycopg.connect(pg_url) as conn:
        public = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        assert [row[0] for row in public] == ["people"]
        ours = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'decisiongraph' "
            "AND tablename = 'dg_event_log'"
        ).fetchone()
    assert ours == (1,)
