"""Stores for request handlers: one shared SQLite store, or a PostgreSQL pool.

Store calls block, so handlers run them in the thread pool; each PostgreSQL
store owns one connection, hence a small pool rather than one shared store.

The database may go away for a while (a restart, a failover, a proxy that
drops idle connections): a request that meets that gets 503
``DG_ERR_STORAGE`` with ``Retry-After``, never a 500, and a store whose
connection was lost is replaced when it is next taken, so the process
recovers on its own once the database is back.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from decisiongraph.core.errors import DecisionGraphError, StorageError
from decisiongraph.store.postgres import PostgresEventStore, is_postgres_url
from decisiongraph.store.sql_base import SqlEventStore
from decisiongraph.store.sqlite import SQLiteEventStore
from decisiongraph.store.transient import is_transient


class StorePool:
    """``size`` PostgreSQL stores (one SQLite store); a request waits at
    most ``wait`` seconds for one, and its statements at most
    ``lock_timeout`` seconds for a PostgreSQL lock."""

    def __init__(
        self, db: str, size: int, *, wait: float = 10.0, lock_timeout: float = 10.0
    ) -> None:
        self.db = db
        self.postgres = is_postgres_url(db)
        self._wait = wait
        self._lock_timeout = lock_timeout
        self._idle: queue.Queue[SqlEventStore] = queue.Queue()
        self._all: list[SqlEventStore] = []
        self._guard = threading.Lock()
        count = size if self.postgres else 1
        for _ in range(count):
            store: SqlEventStore = (
                PostgresEventStore(db, lock_timeout=lock_timeout)
                if self.postgres
                else SQLiteEventStore(db)
            )
            self._all.append(store)
            self._idle.put(store)

    @property
    def primary(self) -> SqlEventStore:
        """A store for background work (workers share it on SQLite)."""
        return self._all[0]

    @contextmanager
    def store(self) -> Iterator[SqlEventStore]:
        """A store for one request's work; the database's passing trouble
        (a lost connection, a timeout, a locked file) becomes
        ``DG_ERR_STORAGE``."""
        if not self.postgres:
            with _unavailable_as_storage_error():
                yield self._all[0]  # the SQLite store serializes its own use
            return
        try:
            store = self._idle.get(timeout=self._wait)
        except queue.Empty:
            raise StorageError(
                "Every database connection of this process is busy; try again",
                details={"pool_size": len(self._all)},
            ) from None
        try:
            if store.connection_lost():
                store = self._replace(store)
            with _unavailable_as_storage_error():
                yield store
        finally:
            self._idle.put(store)

    def _replace(self, lost: SqlEventStore) -> SqlEventStore:
        """A store on a new connection in place of ``lost`` (which stays in
        the pool, to be tried again, while the database cannot be reached)."""
        try:
            fresh = PostgresEventStore(self.db, migrate=False, lock_timeout=self._lock_timeout)
        except StorageError as exc:
            raise StorageError(f"The database cannot be reached: {exc.message}") from exc
        with self._guard:
            self._all[self._all.index(lost)] = fresh
        with contextlib.suppress(Exception):  # a dead connection may refuse even to close
            lost.close()
        return fresh

    def all_stores(self) -> list[SqlEventStore]:
        with self._guard:
            return list(self._all)

    def close(self) -> None:
        for store in self.all_stores():
            store.close()


@contextmanager
def _unavailable_as_storage_error() -> Iterator[None]:
    try:
        yield
    except DecisionGraphError:
        raise
    except Exception as exc:
        if not is_transient(exc):
            raise
        raise StorageError(
            f"The database is unavailable ({type(exc).__name__}); try again"
        ) from exc
