"""Event stores: one protocol, one module per backend.

``open_store`` picks the backend from the target: a ``postgresql://`` URL or
a SQLite path (``:memory:`` included).
"""

from __future__ import annotations

from pathlib import Path

from decisiongraph.core.clock import Clock, system_clock
from decisiongraph.store.protocol import EventStore, LogStats, PrecedentHitRow


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


__all__ = ["EventStore", "LogStats", "PrecedentHitRow", "open_store"]
