"""Read-only connections beside the SQLite store's one writing connection.

In WAL mode a reader never waits for the writer and the writer never waits
for readers, but one connection serves one statement at a time: with every
read on the writing connection, an API key check or a worker's "anything to
do?" poll queued behind each commit. Reads that find the writing connection
busy, and every long read (a stream), take one of these instead. Each read
block is one transaction, hence one snapshot, begun when the block starts:
it sees every commit that finished before (a writer reads its own writes).
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

READER_CACHE_KIB = 16_384  # per connection; reads touch the hot pages only


class WriterLock:
    """A re-entrant lock that knows whether the calling thread holds it.

    Whoever holds the writing connection may be inside a transaction whose
    uncommitted rows its own reads must see; everyone else reads beside it.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._mine = threading.local()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if not self._lock.acquire(blocking, timeout):
            return False
        self._mine.depth = getattr(self._mine, "depth", 0) + 1
        return True

    def release(self) -> None:
        self._mine.depth -= 1
        self._lock.release()

    def held_by_me(self) -> bool:
        return getattr(self._mine, "depth", 0) > 0

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def open_read_only(path: str) -> sqlite3.Connection:
    """A read-only connection to the database file at ``path``."""
    uri = f"file:{quote(str(Path(path).resolve()))}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute(f"PRAGMA cache_size = -{READER_CACHE_KIB}")
    return conn


class ReadConnections:
    """A pool of read-only connections, opened as concurrency asks for them."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._idle: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._guard = threading.Lock()
        self._closed = False

    @contextmanager
    def cursor(self) -> Iterator[sqlite3.Cursor]:
        """A cursor on an idle connection (opened if none is idle), its reads
        one snapshot: a multi-statement read never mixes two states."""
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            conn = open_read_only(self._path)
        cur = conn.cursor()
        try:
            cur.execute("BEGIN")
            yield cur
        finally:
            cur.close()
            if conn.in_transaction:
                conn.execute("ROLLBACK")  # nothing to keep: the reads are done
            with self._guard:
                if self._closed:
                    conn.close()
                else:
                    self._idle.put(conn)

    def close(self) -> None:
        """Close the idle connections now and the busy ones when returned."""
        with self._guard:
            self._closed = True
            while True:
                try:
                    self._idle.get_nowait().close()
                except queue.Empty:
                    break
