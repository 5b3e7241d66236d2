"""Projection catch-up: throughput, and cost against the size of the log.

    .venv/bin/python bench/catchup.py [--sizes 10000 100000 1000000] [--pg-events 100000]
        [--pg-sizes 10000 100000 1000000]

1. Throughput: all four projections caught up from zero over a seeded log,
   on SQLite and on PostgreSQL (events/s), beside the raw floor of reading
   the same rows (a bare SELECT of the log).
2. Scaling: logs of N events with everything projected except the last
   10,000; the time to catch up those 10,000 should not grow with N. On
   SQLite it also prints the pages the catch-up wrote to the WAL per event:
   a commit writes every page its transaction dirtied, and random-keyed
   index entries (node, edge and trace ids) land on one page each once an
   index has more pages than the batch has entries. That count, which rises
   from ~0.2 to ~4 pages per event between 10k and 1M events and is bounded
   by the number of random-keyed index entries an event adds (about five),
   is what the time follows; no step reads the log or the projections whole.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import time
from pathlib import Path

import psycopg
from _data import TENANT, remove_database, scratch_postgres, seeded_envelopes, seeded_sqlite

from decisiongraph.store.postgres import PostgresEventStore
from decisiongraph.store.sqlite import SQLiteEventStore

TAIL = 10_000


def _raw_read_rate(store: SQLiteEventStore | PostgresEventStore) -> float:
    started = time.perf_counter()
    count = sum(1 for _ in store.iter_raw_rows(TENANT))
    return count / (time.perf_counter() - started)


def throughput_sqlite(events: int) -> None:
    path = seeded_sqlite(events)
    work = path.with_name(f"work-{events}.db")
    shutil.copy(path, work)
    store = SQLiteEventStore(work)
    started = time.perf_counter()
    applied = store.project_pending(TENANT, batch_size=5000)
    elapsed = time.perf_counter() - started
    floor = _raw_read_rate(store)
    store.close()
    remove_database(work)
    print(
        f"sqlite     catch-up {applied:>9,} events  {applied / elapsed:>9,.0f} ev/s   "
        f"(raw read floor {floor:,.0f} rows/s)"
    )


def throughput_postgres(events: int) -> None:
    with scratch_postgres() as url:
        store = PostgresEventStore(url)
        for batch in seeded_envelopes(events):
            store.append(TENANT, batch)
        started = time.perf_counter()
        applied = store.project_pending(TENANT, batch_size=5000)
        elapsed = time.perf_counter() - started
        floor = _raw_read_rate(store)
        store.close()
    print(
        f"postgresql catch-up {applied:>9,} events  {applied / elapsed:>9,.0f} ev/s   "
        f"(raw read floor {floor:,.0f} rows/s)"
    )


def scaling(size: int) -> None:
    path = seeded_sqlite(size)
    work = path.with_name(f"scale-{size}.db")
    shutil.copy(path, work)
    store = SQLiteEventStore(work)
    store.project_pending(TENANT, batch_size=5000, until_log_seq=size - TAIL)
    store.close()
    # Start the timed part with an empty WAL, so that it does not pay for
    # checkpointing the set-up's writes. It pays for growing the WAL file
    # instead (new blocks), as the first catch-up after opening a store does;
    # a long-running worker reuses its WAL and is somewhat faster at 1M.
    with sqlite3.connect(work) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    _time_tail("scaling   ", size, SQLiteEventStore(work), sqlite_file=work)
    remove_database(work)


def scaling_postgres(size: int) -> None:
    with scratch_postgres() as url:
        store = PostgresEventStore(url)
        for batch in seeded_envelopes(size):
            store.append(TENANT, batch)
        store.project_pending(TENANT, batch_size=5000, until_log_seq=size - TAIL)
        store.close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")  # as autovacuum would have by now
            conn.execute("CHECKPOINT")
        _time_tail("scaling pg", size, PostgresEventStore(url))


def _time_tail(
    label: str,
    size: int,
    store: SQLiteEventStore | PostgresEventStore,
    sqlite_file: Path | None = None,
) -> None:
    started = time.perf_counter()
    applied = store.project_pending(TENANT, batch_size=5000)
    elapsed = time.perf_counter() - started
    pages = ""
    if sqlite_file is not None:  # its WAL was empty when the clock started
        with sqlite3.connect(sqlite_file) as conn:
            page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        frames = (os.path.getsize(f"{sqlite_file}-wal") - 32) // (page_size + 24)
        pages = f", {frames / applied:.2f} WAL pages/event"
    store.close()
    print(
        f"{label} log {size:>9,} events: last {applied:,} caught up in {elapsed:.2f} s "
        f"({applied / elapsed:,.0f} ev/s{pages})"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--pg-events", type=int, default=100_000)
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--pg-sizes", type=int, nargs="*", default=[10_000, 100_000])
    args = parser.parse_args()
    throughput_sqlite(args.events)
    throughput_postgres(args.pg_events)
    for size in args.sizes:
        scaling(size)
    for size in args.pg_sizes:
        scaling_postgres(size)


if __name__ == "__main__":
    main()
