"""The SDK: agent-thread overhead of a buffered append, and sustained delivery.

    .venv/bin/python bench/sdk.py [--events 20000]

A real ``decisiongraph serve`` (SQLite) on loopback; a buffered ``Client``
with a spool file. Overhead = time spent inside ``observe_entity`` on the
agent's thread (the event is on disk when it returns); throughput = events
delivered per second until the spool is empty. Floor: a bare SQLite INSERT
+ COMMIT of the same JSON into a spool-shaped table.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _data import percentile

from decisiongraph import Client
from decisiongraph.runtime.process import open_runtime_store

ROOT = Path(__file__).resolve().parents[1]
SOURCE = {"producer_id": "bench_agent", "system": "bench"}
ACTOR = {"actor_type": "agent", "actor_id": "bot"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        db = str(Path(folder) / "sdk.db")
        store = open_runtime_store(db)
        _, key = store.create_account("bench", ["default"], ["events:write", "events:read"])
        store.close()
        port = 19000 + os.getpid() % 1000
        server = subprocess.Popen(
            [sys.executable, "-m", "decisiongraph", "serve", "--db", db, "--port", str(port)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "DG_RATE_WRITE": "0", "DG_RATE_READ": "0"},
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.1)
        try:
            client = Client(
                url, key, buffered=True, spool_path=str(Path(folder) / "spool.db"), max_batch=1000
            )
            traces = [
                client.start_trace(
                    "w", f"t{i}", {"entity_type": "a", "entity_id": str(i)}, SOURCE, ACTOR
                )
                for i in range(20)
            ]
            timings = []
            started = time.perf_counter()
            for n in range(args.events):
                entity = {"entity_type": "e", "entity_id": str(n)}
                t0 = time.perf_counter()
                client.observe_entity(traces[n % len(traces)], entity, "related", [], SOURCE, ACTOR)
                timings.append((time.perf_counter() - t0) * 1e6)
            client.flush(timeout=600)
            elapsed = time.perf_counter() - started
            client.close()
        finally:
            server.terminate()
            server.wait(30)
        conn = sqlite3.connect(str(Path(folder) / "floor.db"), isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("CREATE TABLE spool (id INTEGER PRIMARY KEY, body TEXT)")
        body = json.dumps({"payload": {"entity": {"entity_type": "e", "entity_id": "1"}}})
        floor = []
        for _ in range(2000):
            t0 = time.perf_counter()
            conn.execute("INSERT INTO spool (body) VALUES (?)", (body,))
            floor.append((time.perf_counter() - t0) * 1e6)
    print(
        f"buffered append on the agent thread: p50 {percentile(timings, 0.5):.0f} us  "
        f"p99 {percentile(timings, 0.99):.0f} us   (floor: bare spool INSERT p99 "
        f"{percentile(floor, 0.99):.0f} us)"
    )
    print(
        f"sustained buffered delivery: {args.events / elapsed:,.0f} ev/s ({args.events:,} events)"
    )


if __name__ == "__main__":
    main()
