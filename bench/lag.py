"""Projection lag under a sustained append rate, on PostgreSQL.

    .venv/bin/python bench/lag.py [--rate 1000] [--seconds 20] [--batch 20]

A writer appends ``rate`` events per second (by default batches of 20 every
20 ms; one commit per batch, and a commit waits for the WAL flush)
while a worker process keeps all four projections current (NOTIFY
wake-ups). For every batch, lag = time from its commit until every
projection's cursor covers it. Prints p50/p95/p99/max.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import threading
import time

from _data import TENANT, percentile, scratch_postgres, seeded_envelopes

from decisiongraph.store.postgres import PostgresEventStore


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--batch", type=int, default=20)
    args = parser.parse_args()
    total = int(args.rate * args.seconds)
    envelopes = [e for batch in seeded_envelopes(total) for e in batch]
    with scratch_postgres() as url:
        writer = PostgresEventStore(url)
        writer.append(TENANT, envelopes[:10])  # creates the tenant before workers start
        # Workers run in their own process, as in production (own GIL).
        worker = subprocess.Popen([sys.executable, "-m", "decisiongraph.runtime.process", url])
        monitor = PostgresEventStore(url)
        # Measure the steady state: the worker is up once it covers the first batch.
        deadline = time.monotonic() + 60
        while min(monitor.projection_cursors(TENANT).values()) < 10:
            if time.monotonic() > deadline:
                raise SystemExit("the worker did not start within 60 s")
            time.sleep(0.01)
        committed: dict[int, float] = {}
        lags: list[float] = []
        done = threading.Event()

        def watch() -> None:
            pending = 0
            while not done.is_set() or committed:
                cursors = monitor.projection_cursors(TENANT)
                low = min(cursors.values())
                now = time.perf_counter()
                for seq in sorted(s for s in list(committed) if s <= low):
                    lags.append(now - committed.pop(seq))
                pending += 1
                time.sleep(0.005)

        watcher = threading.Thread(target=watch)
        watcher.start()
        size = args.batch
        interval = size / args.rate
        started = time.perf_counter()
        for number, index in enumerate(range(10, len(envelopes), size)):
            target = started + number * interval
            delay = target - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            stored = writer.append(TENANT, envelopes[index : index + size])
            committed[stored[-1].log_seq] = time.perf_counter()
        elapsed = time.perf_counter() - started
        done.set()
        watcher.join(60)
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        writer.close()
        monitor.close()
    achieved = (len(envelopes) - 10) / elapsed
    print(f"append rate achieved {achieved:,.0f} ev/s over {elapsed:.1f} s, {len(lags)} batches")
    print(
        f"projection lag ms: p50 {statistics.median(lags) * 1000:.1f}  "
        f"p95 {percentile(lags, 0.95) * 1000:.1f}  p99 {percentile(lags, 0.99) * 1000:.1f}  "
        f"max {max(lags) * 1000:.1f}"
    )


if __name__ == "__main__":
    main()
