"""SQLite reads beside a busy writer: a read never queues behind another
thread's write, never sees its uncommitted rows, and a read inside a write
sees that write.

Each test holds the store's connection lock with a write transaction open,
as a writer in the middle of a commit does, and reads from another thread.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from decisiongraph.store.sqlite import SQLiteEventStore
from tests.contract.helpers import full_trace

T = "default"


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[SQLiteEventStore]:
    opened = SQLiteEventStore(tmp_path / "readers.db")
    opened.append(T, full_trace("t-1"))
    yield opened
    opened.close()


def in_thread(read: Callable[[], object], timeout: float = 10.0) -> object:
    """Run ``read`` on another thread and return its result (or raise)."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = read()
        except BaseException as exc:  # handed to the test thread
            box["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise AssertionError("the read waited for the writer")
    if "error" in box:
        raise AssertionError(f"the read failed: {box['error']!r}")
    return box["value"]


def hold_open_write(store: SQLiteEventStore) -> None:
    """Take the connection and leave an uncommitted change in it."""
    store._lock.acquire()
    store._conn.execute("BEGIN IMMEDIATE")
    store._conn.execute("UPDATE dg_log_head SET last_log_seq = 999 WHERE tenant_id = ?", (T,))


def release_write(store: SQLiteEventStore) -> None:
    store._conn.execute("ROLLBACK")
    store._lock.release()


def test_a_read_does_not_wait_for_another_threads_write(store: SQLiteEventStore) -> None:
    committed = store.list_events(T)
    hold_open_write(store)
    try:
        seen = in_thread(lambda: store.list_events(T))
        head = in_thread(lambda: store.get_last_log_seq(T))
    finally:
        release_write(store)
    assert seen == committed
    assert head == len(committed)  # not the uncommitted 999


def test_a_read_inside_a_write_sees_that_write(store: SQLiteEventStore) -> None:
    hold_open_write(store)
    try:
        assert store.get_last_log_seq(T) == 999
    finally:
        release_write(store)
    assert store.get_last_log_seq(T) == len(store.list_events(T))


def test_a_read_on_a_side_connection_is_one_snapshot(store: SQLiteEventStore) -> None:
    readers = store._readers
    assert readers is not None
    count = "SELECT COUNT(*) FROM dg_event_log"
    with readers.cursor() as cur:
        before = cur.execute(count).fetchone()[0]
        store.append(T, full_trace("t-2"))  # commits on the writing connection meanwhile
        assert cur.execute(count).fetchone()[0] == before
    with readers.cursor() as cur:
        assert cur.execute(count).fetchone()[0] == before * 2


def test_an_in_memory_store_reads_on_its_one_connection() -> None:
    memory = SQLiteEventStore(":memory:")
    try:
        assert memory._readers is None  # nobody else can open it
        memory.append(T, full_trace("t-1"))
        assert memory.get_last_log_seq(T) == len(memory.list_events(T))
    finally:
        memory.close()


def test_closing_the_store_closes_its_side_connections(store: SQLiteEventStore) -> None:
    readers = store._readers
    assert readers is not None
    hold_open_write(store)
    try:
        in_thread(lambda: store.list_events(T))  # opens a side connection
    finally:
        release_write(store)
    with readers.cursor() as cur:
        conn = cur.connection
    store.close()
    with pytest.raises(Exception, match="closed"):
        conn.execute("SELECT 1")


def test_a_stream_being_read_leaves_writes_to_wait_for_another_writer(
    store: SQLiteEventStore, tmp_path: Path
) -> None:
    """While a long read (an export, digests) is half consumed, a write that
    finds another connection writing waits its turn (busy timeout) instead
    of failing at once with 'database is locked', which is what SQLite does
    to a connection holding a read transaction of its own."""
    for index in range(300):  # more rows than a stream fetches at once
        store.append(T, full_trace(f"bulk-{index}"))
    head = store.get_last_log_seq(T)
    rows = store.iter_raw_rows(T)
    next(rows)  # the stream is open, and stays open
    other = sqlite3.connect(tmp_path / "readers.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # a second writer (CLI, rebuild heartbeat)
    outcome: dict[str, object] = {}

    def append() -> None:
        try:
            outcome["stored"] = store.append(T, full_trace("t-2"))
        except Exception as exc:  # the failure this test is about
            outcome["error"] = exc

    writer = threading.Thread(target=append)
    writer.start()
    writer.join(1.0)  # it must still be waiting for the other writer
    finished_early = not writer.is_alive()
    other.execute("COMMIT")
    other.close()
    writer.join(30)
    assert not finished_early, f"the append did not wait: {outcome}"
    assert "error" not in outcome
    assert store.get_last_log_seq(T) == head + 10
    assert sum(1 for _ in rows) == head - 1  # the open stream kept its snapshot


def test_side_connections_find_the_file_after_a_change_of_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    relative = SQLiteEventStore("relative.db")
    try:
        relative.append(T, full_trace("t-1"))
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        monkeypatch.chdir(elsewhere)
        assert len(list(relative.iter_raw_rows(T))) == 10  # streams on a side connection
    finally:
        relative.close()
