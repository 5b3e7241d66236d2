"""Append throughput and latency, each beside the raw floor of the same rows.

    .venv/bin/python bench/append.py [--batch-events 50000]

1. Single append through the facade on in-memory SQLite: 400 EntityObserved
   appends to one trace (spec 15), mean and p95 (linear interpolation), and
   the same on a SQLite file and on PostgreSQL. Floor: one bare INSERT +
   COMMIT per row into an equivalent table. The facade projects each append
   in its own transaction by default; the spec's baseline (0.08 ms) timed
   the append alone, which is the facade with ``project_on_append=False``
   (projections then kept current by workers), so both are printed.
2. Batch append (``store.append`` of 1,000 envelopes per transaction) on a
   SQLite file (median of ``--runs``) and on PostgreSQL, events/s. Floor:
   bare ``executemany`` / COPY of the same rows into an equivalent table
   without validation. For SQLite also where an event's time goes:
   validation, the append plan (sequencing, hash chain), and storing the
   rows into the log's own table and indexes with nothing before them; and
   two ceilings: the rate if storing cost nothing (validation and plan
   alone), and if the log needed no index (those plus the bare floor).
3. First, a machine reference (see ``_data.machine_reference``): machines
   differ 2-3x between sessions, so compare figures only beside it.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

import psycopg
from _data import TENANT, machine_reference, percentile, scratch_postgres, seeded_envelopes

from decisiongraph import ActorRef, DecisionGraph, EntityRef, SourceRef
from decisiongraph.core.validation import validate_envelope
from decisiongraph.store.append_plan import plan_append
from decisiongraph.store.postgres import PostgresEventStore
from decisiongraph.store.sqlite import SQLiteEventStore

SOURCE = SourceRef("bench_agent", "bench")
ACTOR = ActorRef("agent", "bench_bot")
FLOOR_TABLE = (
    "CREATE TABLE floor (tenant_id TEXT, log_seq BIGINT, event_id TEXT, trace_id TEXT, "
    "trace_seq BIGINT, event_type TEXT, occurred_at TEXT, recorded_at TEXT, producer_id TEXT, "
    "system TEXT, subsystem TEXT, actor_type TEXT, actor_id TEXT, correlation_id TEXT, "
    "causation_event_id TEXT, idempotency_key TEXT, schema_version BIGINT, payload_json TEXT, "
    "payload_hash TEXT, tags_json TEXT, chain_hash TEXT)"
)


def single_appends(
    target: str, count: int = 400, *, project_on_append: bool = True
) -> tuple[float, float]:
    with DecisionGraph(target, project_on_append=project_on_append) as dg:
        trace = dg.start_trace("bench", "single appends", EntityRef("account", "a0"), SOURCE, ACTOR)
        for warm in range(20):
            dg.observe_entity(trace, EntityRef("account", f"w{warm}"), "related", [], SOURCE, ACTOR)
        timings = []
        for index in range(count):
            started = time.perf_counter()
            dg.observe_entity(
                trace, EntityRef("account", f"a{index}"), "related", [], SOURCE, ACTOR
            )
            timings.append((time.perf_counter() - started) * 1000)
    return sum(timings) / len(timings), percentile(timings, 0.95)


def sample_rows(events: int) -> list[tuple[object, ...]]:
    envelopes = [e for batch in seeded_envelopes(events) for e in batch]
    items = [validate_envelope(e) for e in envelopes]
    return plan_append(TENANT, items, {}, {}, (0, "sha256:" + "0" * 64), "now").rows


def sqlite_single_floor(rows: list[tuple[object, ...]]) -> float:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute(FLOOR_TABLE)
    insert = f"INSERT INTO floor VALUES ({', '.join('?' for _ in rows[0])})"
    started = time.perf_counter()
    for row in rows[:400]:
        conn.execute("BEGIN")
        conn.execute(insert, row)
        conn.execute("COMMIT")
    return (time.perf_counter() - started) / 400 * 1000


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def batch_sqlite(events: int, rows: list[tuple[object, ...]], runs: int) -> dict[str, float]:
    """Batch append on a SQLite file (median of ``runs``), where its time
    goes per event, and two floors: the same rows into the log's own table
    and indexes (what storing costs with nothing before it), and into a bare
    table without indexes."""
    batches = list(seeded_envelopes(events))
    rates, stored, bare = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        for run in range(runs):
            store = SQLiteEventStore(Path(folder) / f"batch{run}.db")
            started = time.perf_counter()
            for batch in batches:
                store.append(TENANT, batch)
            rates.append(events / (time.perf_counter() - started))
            store.close()
            own = SQLiteEventStore(Path(folder) / f"own{run}.db")
            conn = own._conn  # the store's own connection: its pragmas, its schema
            started = time.perf_counter()
            for start in range(0, len(rows), 1000):
                cur = conn.cursor()
                cur.execute("BEGIN IMMEDIATE")
                own._insert_events(cur, rows[start : start + 1000])  # with the rows' digests
                cur.execute("COMMIT")
            stored.append((time.perf_counter() - started) / len(rows) * 1e6)
            own.close()
            # The bare floor on a store's own connection too (its pragmas and
            # background checkpoints), into a table without any index.
            floor = SQLiteEventStore(Path(folder) / f"floor{run}.db")
            conn = floor._conn
            conn.execute(FLOOR_TABLE)
            floor_insert = f"INSERT INTO floor VALUES ({', '.join('?' for _ in rows[0])})"
            started = time.perf_counter()
            for start in range(0, len(rows), 1000):
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(floor_insert, rows[start : start + 1000])
                conn.execute("COMMIT")
            bare.append(len(rows) / (time.perf_counter() - started))
            floor.close()
    envelopes = [envelope for batch in batches for envelope in batch]
    started = time.perf_counter()
    items = [validate_envelope(envelope) for envelope in envelopes]
    validate = (time.perf_counter() - started) / len(items) * 1e6
    started = time.perf_counter()
    plan_append(TENANT, items, {}, {}, (0, "sha256:" + "0" * 64), "x")
    plan = (time.perf_counter() - started) / len(items) * 1e6
    return {
        "rate": _median(rates),
        "low": min(rates),
        "high": max(rates),
        "validate_us": validate,
        "plan_us": plan,
        "store_us": _median(stored),
        "bare": _median(bare),
    }


def batch_postgres(
    events: int, rows: list[tuple[object, ...]]
) -> tuple[float, float, float, float]:
    with scratch_postgres() as url:
        mean, p95 = single_appends(url, 200)
        store = PostgresEventStore(url)
        batches = list(seeded_envelopes(events))
        started = time.perf_counter()
        for batch in batches:
            store.append(TENANT, batch)
        rate = events / (time.perf_counter() - started)
        store.close()
        with psycopg.connect(url) as conn:
            conn.execute(FLOOR_TABLE)
            conn.commit()
            started = time.perf_counter()
            for start in range(0, len(rows), 1000):
                with conn.cursor().copy("COPY floor FROM STDIN") as copy:
                    for row in rows[start : start + 1000]:
                        copy.write_row(row)
                conn.commit()
            floor = len(rows) / (time.perf_counter() - started)
    return rate, floor, mean, p95


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-events", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3, help="SQLite batch runs (median)")
    args = parser.parse_args()
    print(f"machine reference {machine_reference():.1f} us (smaller is faster; see _data.py)")
    rows = sample_rows(args.batch_events)
    mean, p95 = single_appends(":memory:")
    print(
        f"single append, facade, :memory: SQLite   mean {mean:.3f} ms  p95 {p95:.3f} ms   "
        f"(floor: bare INSERT+COMMIT {sqlite_single_floor(rows):.3f} ms)"
    )
    mean, p95 = single_appends(":memory:", project_on_append=False)
    print(
        f"  the append alone (project_on_append=False, as the spec baseline)  "
        f"mean {mean:.3f} ms  p95 {p95:.3f} ms"
    )
    with tempfile.TemporaryDirectory() as folder:
        mean, p95 = single_appends(str(Path(folder) / "single.db"))
    print(f"single append, facade, SQLite file       mean {mean:.3f} ms  p95 {p95:.3f} ms")
    sqlite = batch_sqlite(args.batch_events, rows, args.runs)
    print(
        f"batch append 1000/tx, SQLite file        {sqlite['rate']:>9,.0f} ev/s   "
        f"(median of {args.runs}: {sqlite['low']:,.0f}-{sqlite['high']:,.0f}; "
        f"floor executemany {sqlite['bare']:,.0f} rows/s)"
    )
    store_rate = 1e6 / sqlite["store_us"]
    print(
        f"  per event: validate {sqlite['validate_us']:.1f} us, plan {sqlite['plan_us']:.1f} us, "
        f"store {sqlite['store_us']:.1f} us (the rows alone into the log's own table and "
        f"indexes: {store_rate:,.0f} rows/s, the ceiling with nothing before it)"
    )
    python_us = sqlite["validate_us"] + sqlite["plan_us"]
    print(
        f"  ceilings: {1e6 / python_us:,.0f} ev/s if storing cost nothing (validate + plan "
        f"alone); {1e6 / (python_us + 1e6 / sqlite['bare']):,.0f} ev/s if the log's table "
        f"needed no index (validate + plan + the bare floor)"
    )
    rate, floor, mean, p95 = batch_postgres(args.batch_events, rows)
    print(f"single append, facade, PostgreSQL        mean {mean:.3f} ms  p95 {p95:.3f} ms")
    print(
        f"batch append 1000/tx, PostgreSQL         {rate:>9,.0f} ev/s   "
        f"(floor COPY {floor:,.0f} rows/s)"
    )


if __name__ == "__main__":
    main()
