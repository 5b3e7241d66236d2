"""Shared helpers for the benchmarks: cached seeded logs and scratch databases."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg

from decisiongraph.core.envelope import EventEnvelope, envelope_from_dict
from decisiongraph.seed import generate_events
from decisiongraph.store.sqlite import SQLiteEventStore

DATA = Path(__file__).resolve().parent / ".data"
PG_ADMIN = os.environ.get("DG_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TENANT = "default"


def seeded_envelopes(events: int, seed: int = 7) -> Iterator[list[EventEnvelope]]:
    """Batches of 1,000 envelopes from the seed generator, ``events`` in all."""
    batch: list[EventEnvelope] = []
    for produced, raw in enumerate(generate_events(events // 9 + 50, seed), start=1):
        batch.append(envelope_from_dict(raw))
        if len(batch) == 1000:
            yield batch
            batch = []
        if produced >= events:
            break
    if batch:
        yield batch


def seeded_sqlite(events: int) -> Path:
    """A SQLite file holding ``events`` seeded events and no projections (cached)."""
    DATA.mkdir(exist_ok=True)
    path = DATA / f"log-{events}.db"
    if not path.exists():
        partial = path.with_suffix(".partial")
        for suffix in ("", "-wal", "-shm"):
            Path(str(partial) + suffix).unlink(missing_ok=True)
        store = SQLiteEventStore(partial)
        for batch in seeded_envelopes(events):
            store.append(TENANT, batch)
        store.close()
        for suffix in ("-wal", "-shm"):
            Path(str(partial) + suffix).unlink(missing_ok=True)
        partial.rename(path)
    else:
        SQLiteEventStore(path).close()  # a cache from before a migration gets it, once
        for suffix in ("-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
    return path


@contextlib.contextmanager
def scratch_postgres() -> Iterator[str]:
    """A throw-away PostgreSQL database, dropped afterwards."""
    name = f"dg_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def percentile(values: list[float], fraction: float) -> float:
    """Linear interpolation between closest ranks (as the spec's baselines do)."""
    ordered = sorted(values)
    index = (len(ordered) - 1) * fraction
    low = int(index)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (index - low)


def remove_database(path: Path) -> None:
    """Delete a SQLite file with its WAL and shared-memory companions."""
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)


def machine_reference(rounds: int = 5) -> float:
    """Microseconds per round of a fixed pure-Python workload (canonical
    JSON of a small payload, a SHA-256, a dict walk), best of ``rounds``.

    Machines here differ by 2-3x from one session to the next: a figure is
    comparable with another run's only beside this one (smaller is faster).
    """
    payload = {
        "policy": {"policy_id": "discount_limit", "policy_version": "3"},
        "inputs": [
            {"key": f"k{i}", "value": {"type": "decimal", "value": "4.0"}} for i in range(6)
        ],
        "result": "pass",
    }
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(2000):
            text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
            hashlib.sha256(text.encode()).hexdigest()
            stack: list[object] = [payload]
            while stack:
                item = stack.pop()
                if isinstance(item, dict):
                    stack.extend(item.values())
                elif isinstance(item, list):
                    stack.extend(item)
        best = min(best, (time.perf_counter() - started) / 2000 * 1e6)
    return best
