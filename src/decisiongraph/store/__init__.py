"""Event stores: one protocol, one module per backend.

``open_store`` picks the backend from the target: a ``postgresql://`` URL or
a SQLite path (``:memory:`` included).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from decisiongraph.core.clock import Clock, system_clock
from decisiongraph.core.errors import StorageError
from decisiongraph.store.ownership import (
    PG_TABLES,
    SQLITE_TABLES,
    foreign,
    refuse_foreign,
    shown_target,
)
from decisiongraph.store.protocol import EventStore, LogStats, PrecedentHitRow


def open_store(
    target: str | Path, *, clock: Clock = system_clock, read_only: bool = False
) -> EventStore:
    """Open (and migrate) the store at ``target``; another application's
    database is refused (see :mod:`decisiongraph.store.ownership`)."""
    text = str(target)
    if text.startswith(("postgresql://", "postgres://")):
        from decisiongraph.store.postgres import PostgresEventStore

        return PostgresEventStore(text, clock=clock)
    from decisiongraph.store.sqlite import SQLiteEventStore

    return SQLiteEventStore(text, clock=clock, read_only=read_only)


def foreign_tables(target: str | Path) -> list[str]:
    """The tables of another application at ``target``: empty for a database
    of ours, an empty one, or a SQLite file that does not exist yet.

    Only reads: a SQLite file is opened read-only (``mode=ro``) and
    PostgreSQL is asked through its catalog, so looking changes nothing.
    """
    text = str(target)
    if text.startswith(("postgresql://", "postgres://")):
        import psycopg

        try:
            with psycopg.connect(text, autocommit=True) as conn:
                names = [str(row[0]) for row in conn.execute(PG_TABLES)]
        except psycopg.Error as exc:
            raise StorageError(f"Cannot open PostgreSQL database: {exc}") from exc
    else:
        path = Path(text)
        if text == ":memory:" or text.startswith("file:") or not path.is_file():
            return []
        import sqlite3

        uri = f"file:{quote(str(path.resolve()))}?mode=ro"
        if _wal_without_log(path):
            # A read-only connection to a WAL database would leave -wal and
            # -shm files behind; with no log, the file alone is the database.
            uri += "&immutable=1"
        try:
            lite = sqlite3.connect(uri, uri=True, isolation_level=None)
            try:
                lite.execute("PRAGMA busy_timeout = 30000")
                names = [str(row[0]) for row in lite.execute(SQLITE_TABLES)]
            finally:
                lite.close()
        except sqlite3.Error as exc:
            raise StorageError(f"Cannot open SQLite database '{text}': {exc}") from exc
    return foreign(names)


def _wal_without_log(path: Path) -> bool:
    """Whether the SQLite file at ``path`` is in WAL mode (header byte 18)
    with no write-ahead log beside it."""
    try:
        with path.open("rb") as file:
            header = file.read(20)
    except OSError:
        return False
    wal = header.startswith(b"SQLite format 3\x00") and len(header) == 20 and header[18] == 2
    return wal and not Path(f"{path}-wal").exists()


def refuse_foreign_database(target: str | Path) -> None:
    """``DG_ERR_INVALID_ARGUMENT`` when ``target`` holds another application's
    tables and none of ours, checked without opening a store (which would
    refuse it too, once connected): for commands that should fail before
    doing anything else."""
    refuse_foreign(shown_target(str(target)), foreign_tables(target))


__all__ = [
    "EventStore",
    "LogStats",
    "PrecedentHitRow",
    "foreign_tables",
    "open_store",
    "refuse_foreign_database",
    "shown_target",
]
