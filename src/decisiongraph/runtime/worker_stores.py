"""The stores a supervisor's workers take turns on.

A worker needs a database connection only while it steps. One store per
(tenant, projection), as before, ran a PostgreSQL server out of connections
at a few dozen tenants (four per tenant, per worker process), and the
projections that could not connect stalled without a word. Workers now
borrow one of a fixed number of stores for each step; leases live in a
table and projection locks in transactions, so which connection a worker
steps on does not matter. A store that failed under a worker is closed and
replaced by a fresh one at its next loan, as a restarted worker's was.

The stores lent out are known, so that a stopping supervisor can cancel
what they run (:meth:`WorkerStores.cancel_lent`) when a step waits on a
lock past the grace period.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from decisiongraph.store.sql_base import SqlEventStore

log = logging.getLogger(__name__)


class WorkerStores:
    """``size`` stores opened by ``factory`` as they are first needed (each
    passed to ``prepare``), or one ``shared`` store that serializes its own
    use (embedded SQLite), lent to every worker."""

    def __init__(
        self,
        factory: Callable[[], SqlEventStore],
        size: int,
        prepare: Callable[[SqlEventStore], None],
        shared: SqlEventStore | None = None,
    ) -> None:
        self._factory = factory
        self._prepare = prepare
        self._shared = shared
        self._idle: queue.SimpleQueue[SqlEventStore | None] = queue.SimpleQueue()
        for _ in range(size):
            self._idle.put(None)  # opened on first loan
        self.size = size
        # Lent stores that cancel_lent may interrupt. Under the lock a store
        # is never closed while being cancelled (SQLite forbids it).
        self._lent: set[SqlEventStore] = set()
        self._lent_lock = threading.Lock()

    @contextmanager
    def borrow(self, *, interruptible: bool = True) -> Iterator[SqlEventStore]:
        """A store for one step; waits while every store is lent out.

        ``interruptible=False`` keeps the loan out of :meth:`cancel_lent`:
        for the lease release on the way out, which a cancel meant for the
        step before it must not undo.
        """
        if self._shared is not None:
            yield self._shared
            return
        store = self._idle.get()
        failed = False
        try:
            if store is None:
                store = self._factory()
                self._prepare(store)
            if interruptible:
                with self._lent_lock:
                    self._lent.add(store)
            yield store
        except BaseException:
            failed = True
            raise
        finally:
            if store is not None:
                with self._lent_lock:
                    self._lent.discard(store)
                if failed:  # its connection may be lost or mid-transaction
                    with contextlib.suppress(Exception):
                        store.close()
                    store = None
            self._idle.put(store)

    def cancel_lent(self) -> int:
        """Cancel the statements the lent stores run (see
        :meth:`SqlEventStore.cancel`); returns how many stores were lent.

        Never the shared store: its one connection also serves the process's
        own appends and reads, whose statement a cancel could hit instead of
        the stuck worker's.
        """
        if self._shared is not None:
            return 0
        with self._lent_lock:
            for store in self._lent:
                store.cancel()
            return len(self._lent)

    def close(self) -> None:
        """Close the idle stores (call once no worker steps any more)."""
        if self._shared is not None:
            return
        while True:
            try:
                store = self._idle.get_nowait()
            except queue.Empty:
                return
            if store is not None:
                try:
                    store.close()
                except Exception:
                    log.debug("could not close a worker store", exc_info=True)
