"""Stores for request handlers: one shared SQLite store, or a PostgreSQL pool.

Store calls block, so handlers run them in the thread pool; each PostgreSQL
store owns one connection, hence a small pool rather than one shared store.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from contextlib import contextmanager

from decisiongraph.store.postgres import PostgresEventStore, is_postgres_url
from decisiongraph.store.sql_base import SqlEventStore
from decisiongraph.store.sqlite import SQLiteEventStore


class StorePool:
    def __init__(self, db: str, size: int) -> None:
        self.db = db
        self.postgres = is_postgres_url(db)
        self._idle: queue.Queue[SqlEventStore] = queue.Queue()
        self._all: list[SqlEventStore] = []
        count = size if self.postgres else 1
        for _ in range(count):
            store: SqlEventStore = PostgresEventStore(db) if self.postgres else SQLiteEventStore(db)
            self._all.append(store)
            self._idle.put(store)

    @property
    def primary(self) -> SqlEventStore:
        """A store for background work (workers share it on SQLite)."""
        return self._all[0]

    @contextmanager
    def store(self) -> Iterator[SqlEventStore]:
        if not self.postgres:
            yield self._all[0]  # the SQLite store serializes its own use
            return
        store = self._idle.get(timeout=30)
        try:
            yield store
        finally:
            self._idle.put(store)

    def all_stores(self) -> list[SqlEventStore]:
        return list(self._all)

    def close(self) -> None:
        for store in self._all:
            store.close()
