"""WAL checkpoints beside the writer: the log is copied back and rewound
without the writer's own checkpoint, commits never wait for a full copy, and
a reader on an old snapshot only delays the rewind.

A raw writer connection with SQLite's automatic checkpoint switched off
stands in for the store's, so that any rewind seen is the checkpointer's.
"""

from __future__ import annotations

import gc
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from decisiongraph.store.sqlite import SQLiteEventStore
from decisiongraph.store.sqlite_checkpoint import Checkpointer
from decisiongraph.store.sqlite_readers import WriterLock
from tests.contract.helpers import full_trace
from tests.runtime.support import wait_until

PAGES = 64  # a rewind threshold a test reaches in a few commits


@pytest.fixture()
def writer(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(tmp_path / "wal.db", isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
    yield conn
    conn.close()


def write_pages(conn: sqlite3.Connection, start: int, pages: int) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        "INSERT INTO t VALUES (?, randomblob(3000))", [(start + i,) for i in range(pages)]
    )
    conn.execute("COMMIT")


def wal_bytes(tmp_path: Path) -> int:
    return os.path.getsize(tmp_path / "wal.db-wal")


def test_a_long_log_is_copied_back_and_rewound(writer: sqlite3.Connection, tmp_path: Path) -> None:
    checkpointer = Checkpointer(
        str(tmp_path / "wal.db"), WriterLock(), restart_pages=PAGES, min_gap=0.01
    )
    try:
        write_pages(writer, 0, PAGES * 2)
        grown = wal_bytes(tmp_path)
        checkpointer.nudge()
        wait_until(lambda: checkpointer.rewinds >= 1, 10, "a rewind")
        # The next commits start over at the head of the log: it stops growing.
        for batch in range(5):
            write_pages(writer, 10_000 + batch * 10, 10)
        assert wal_bytes(tmp_path) == grown
        # Everything written is in the database file, as another connection sees.
        reader = sqlite3.connect(tmp_path / "wal.db")
        assert reader.execute("SELECT count(*) FROM t").fetchone()[0] == PAGES * 2 + 50
        reader.close()
    finally:
        checkpointer.close()


def test_a_short_log_is_copied_back_but_not_rewound(
    writer: sqlite3.Connection, tmp_path: Path
) -> None:
    checkpointer = Checkpointer(
        str(tmp_path / "wal.db"), WriterLock(), restart_pages=10_000, min_gap=0.01
    )
    try:
        write_pages(writer, 0, 20)
        checkpointer.nudge()
        wait_until(lambda: checkpointer.rounds >= 1, 10, "a round")
        assert checkpointer.rewinds == 0
        # Copied back all the same: a passive checkpoint now has nothing left.
        _, pages, copied = writer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert pages == copied > 0
    finally:
        checkpointer.close()


def test_a_reader_on_an_old_snapshot_delays_the_rewind_only(
    writer: sqlite3.Connection, tmp_path: Path
) -> None:
    write_pages(writer, 0, 5)
    reader = sqlite3.connect(tmp_path / "wal.db", isolation_level=None)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM t").fetchone()[0] == 5
    checkpointer = Checkpointer(
        str(tmp_path / "wal.db"), WriterLock(), restart_pages=PAGES, min_gap=0.01
    )
    try:
        write_pages(writer, 100, PAGES * 2)
        checkpointer.nudge()
        wait_until(lambda: checkpointer.rounds >= 1, 10, "a round")
        assert checkpointer.rewinds == 0
        # The reader still sees its snapshot; the writer was never refused.
        assert reader.execute("SELECT count(*) FROM t").fetchone()[0] == 5
        write_pages(writer, 1_000, 3)
        reader.execute("COMMIT")
        write_pages(writer, 2_000, 1)
        checkpointer.nudge()
        wait_until(lambda: checkpointer.rewinds >= 1, 10, "a rewind once the reader left")
    finally:
        checkpointer.close()
        reader.close()


def test_the_writer_lock_holder_is_never_interrupted(
    writer: sqlite3.Connection, tmp_path: Path
) -> None:
    lock = WriterLock()
    checkpointer = Checkpointer(str(tmp_path / "wal.db"), lock, restart_pages=PAGES, min_gap=0.01)
    try:
        with lock:  # a writer of this process mid-transaction
            write_pages(writer, 0, PAGES * 2)
            checkpointer.nudge()
            wait_until(lambda: checkpointer.rounds >= 1, 10, "a round")
            assert checkpointer.rewinds == 0
            write_pages(writer, 5_000, 1)  # still free to commit
        checkpointer.nudge()
        wait_until(lambda: checkpointer.rewinds >= 1, 10, "a rewind after the lock was freed")
    finally:
        checkpointer.close()


def test_the_store_runs_one_for_a_file_and_stops_it_on_close(tmp_path: Path) -> None:
    store = SQLiteEventStore(tmp_path / "store.db")
    checkpointer = store._checkpointer
    assert checkpointer is not None
    store.append("default", full_trace("t-1"))
    wait_until(lambda: checkpointer.rounds >= 1, 10, "a round after a commit")
    store.close()
    assert not checkpointer._thread.is_alive()
    assert SQLiteEventStore(":memory:")._checkpointer is None


def test_a_store_collected_unclosed_stops_its_checkpointer(tmp_path: Path) -> None:
    store = SQLiteEventStore(tmp_path / "forgotten.db")
    checkpointer = store._checkpointer
    assert checkpointer is not None
    del store
    gc.collect()
    wait_until(lambda: not checkpointer._thread.is_alive(), 10, "the thread to stop")
