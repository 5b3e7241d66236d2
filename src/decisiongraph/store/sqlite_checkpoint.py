"""Checkpoints of the SQLite write-ahead log, on a thread of their own.

With ``synchronous = NORMAL`` a commit never syncs: durability is paid for
at checkpoints, which sync the log before copying its pages back into the
database file. Left to SQLite, the committing connection runs a checkpoint
inside the commit that takes the log past ``wal_autocheckpoint`` pages, and
every append in the process waits for it (at HTTP ingest rates, a third of
the writer's time, and appends stalled for 0.4 s at p99). Here a thread with
a connection of its own copies the log back while appends go on (PASSIVE);
once the log is long it then takes the writer lock for a moment, copies the
few pages committed meanwhile and rewinds the log (RESTART), so that the log
is reused from its start instead of growing.

The writer keeps SQLite's own checkpoint as a backstop for a log this thread
cannot rewind (a read holding an old snapshot, another process's writer).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable

from decisiongraph.store.sqlite_readers import WriterLock

log = logging.getLogger(__name__)

# Rewind once the log holds this many pages (4 KiB each): short enough to
# stay in the OS's cache, long enough that a hot page rewritten by many
# commits is copied back once.
RESTART_PAGES = 32_768
# Longest a rewind waits for readers on an old snapshot; appends wait too.
RESTART_WAIT_MS = 50
# Rounds are at least this far apart (seconds), however busy the writer is:
# each one syncs the log and the database file.
MIN_GAP = 0.5


class Checkpointer:
    """Copies one database's log back into its file, beside the writer.

    ``rounds`` and ``rewinds`` count the checkpoints run and the times the
    log was rewound, for health and tests. While ``paused()`` is true (a long
    catch-up, whose large commits make checkpoints rare anyway) rounds are
    left to the writer: copying pages it is about to rewrite slowed a 100k
    rebuild by a tenth.
    """

    def __init__(
        self,
        path: str,
        writer_lock: WriterLock,
        *,
        restart_pages: int = RESTART_PAGES,
        min_gap: float = MIN_GAP,
        paused: Callable[[], bool] = lambda: False,
    ) -> None:
        self._path = path
        self._writer_lock = writer_lock
        self._restart_pages = restart_pages
        self._min_gap = min_gap
        self._paused = paused
        self.rounds = 0
        self.rewinds = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dg-sqlite-checkpoint", daemon=True)
        self._thread.start()

    def nudge(self) -> None:
        """A commit happened: the log may want copying back."""
        self._wake.set()

    def close(self) -> None:
        """Stop after the round in progress, if any (idempotent)."""
        self._stop.set()
        self._wake.set()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            log.warning("WAL checkpoints left to the writer: %s", exc)
            return
        try:
            while True:
                self._wake.wait()
                if self._stop.is_set():
                    return
                self._wake.clear()
                if self._paused():
                    continue
                try:
                    self._round(conn)
                except sqlite3.Error as exc:  # the writer's backstop covers us
                    log.warning("WAL checkpoint failed: %s", exc)
                if self._stop.wait(self._min_gap):
                    return
        finally:
            conn.close()

    def _round(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA busy_timeout = 0")
        busy, pages, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.rounds += 1
        if busy or pages < self._restart_pages:
            return
        # Under the writer lock no append of this process is in flight, so
        # the rewind waits only for readers and other processes. A writer
        # that keeps the lock for long (a rebuild) is left alone this round.
        if not self._writer_lock.acquire(timeout=1.0):
            return
        try:
            conn.execute(f"PRAGMA busy_timeout = {RESTART_WAIT_MS}")
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            if not busy:
                self.rewinds += 1
        finally:
            self._writer_lock.release()
