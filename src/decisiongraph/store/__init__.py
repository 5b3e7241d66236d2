"""Event stores: one protocol, one module per backend.

``open_store`` picks the backend from the target: a ``postgresql://`` URL or
a SQLite path (``:memory:`` included).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from decisiongraph.core.clock import Clock, system_clock
from decisiongraph.core.errors import InvalidArgumentError, StorageError
from decisiongraph.store.protocol import EventStore, LogStats, PrecedentHitRow

#: The table every DecisionGraph database has: migration 0001 creates it in
#: the same transaction that creates ``schema_migrations``, so no migrated
#: database lacks it. ``schema_migrations`` alone is no sign of ours (Rails
#: and other migrators use that name too).
OWN_TABLE = "dg_event_log"

#: Tables and views in the current PostgreSQL schema, leaving out those an
#: extension installed (PostGIS's ``spatial_ref_sys`` is nobody's data).
_PG_TABLES = (
    "SELECT c.relname FROM pg_catalog.pg_class c "
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm', 'f') "
    "AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d "
    "WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e') "
    "ORDER BY c.relname"
)
_SQLITE_TABLES = (
    "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
    "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
)


def open_store(
    target: str | Path, *, clock: Clock = system_clock, read_only: bool = False
) -> EventStore:
    """Open (and migrate) the store at ``target``."""
    text = str(target)
    if text.startswith(("postgresql://", "postgres://")):
        from decisiongraph.store.postgres import PostgresEventStore

        return PostgresEventStore(text, clock=clock)
    from decisiongraph.store.sqlite import SQLiteEventStore

    return SQLiteEventStore(text, clock=clock, read_only=read_only)


def shown_target(target: str) -> str:
    """``target`` fit for a message: a PostgreSQL URL loses its password and
    query (either may hold a secret), a path stays as given."""
    if not target.startswith(("postgresql://", "postgres://")):
        return target
    parts = urlsplit(target)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port:
        host += f":{parts.port}"
    if parts.username:
        host = f"{parts.username}@{host}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


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
                names = [str(row[0]) for row in conn.execute(_PG_TABLES)]
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
                names = [str(row[0]) for row in lite.execute(_SQLITE_TABLES)]
            finally:
                lite.close()
        except sqlite3.Error as exc:
            raise StorageError(f"Cannot open SQLite database '{text}': {exc}") from exc
    return [] if OWN_TABLE in names else names


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
    tables and none of ours.

    Opening a store migrates it: a mistyped path or URL would otherwise give
    someone else's database our fifty-odd tables (and switch a SQLite file
    to WAL) on a mere status query. Call this before opening; an empty
    database, or a new SQLite file, is still ours to create.
    """
    tables = foreign_tables(target)
    if tables:
        raise InvalidArgumentError(
            f"'{shown_target(str(target))}' is not a DecisionGraph database "
            "(it holds other tables)",
            details={"tables": tables[:10]},
        )


__all__ = [
    "EventStore",
    "LogStats",
    "PrecedentHitRow",
    "foreign_tables",
    "open_store",
    "refuse_foreign_database",
    "shown_target",
]
