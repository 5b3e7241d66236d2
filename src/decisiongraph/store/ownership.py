"""Whose database is this? Opening a store migrates it, so a store refuses a
database that holds another application's tables and none of ours.

A mistyped path or URL would otherwise give someone else's database our
fifty-odd tables (and switch a SQLite file to WAL). An empty database, a
new SQLite file, or one of ours is fine. To share a PostgreSQL database
with an application, give DecisionGraph a schema of its own
(``?options=-csearch_path%3Ddecisiongraph``): only the current schema's
tables count.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

from decisiongraph.core.errors import InvalidArgumentError

#: The table every DecisionGraph database has: migration 0001 creates it in
#: the same transaction that creates ``schema_migrations``, so no migrated
#: database lacks it. ``schema_migrations`` alone is no sign of ours (Rails
#: and other migrators use that name too).
OWN_TABLE = "dg_event_log"

#: Tables and views in the current PostgreSQL schema, leaving out those an
#: extension installed (PostGIS's ``spatial_ref_sys`` is nobody's data).
PG_TABLES = (
    "SELECT c.relname FROM pg_catalog.pg_class c "
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm', 'f') "
    "AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d "
    "WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e') "
    "ORDER BY c.relname"
)
SQLITE_TABLES = (
    "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
    "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
)


def foreign(names: Sequence[str]) -> list[str]:
    """Of a database's table names, those of another application (none when
    the database is ours or empty)."""
    return [] if OWN_TABLE in names else list(names)


def refuse_foreign(shown: str, names: Sequence[str]) -> None:
    """``DG_ERR_INVALID_ARGUMENT`` when ``names`` (a database's tables) are
    another application's; ``shown`` names the database, without secrets."""
    tables = foreign(names)
    if tables:
        raise InvalidArgumentError(
            f"'{shown}' is not a DecisionGraph database (it holds other tables)",
            details={"tables": tables[:10]},
        )


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
