"""Full rebuild: time for N events, and peak memory (it must stream).

    .venv/bin/python bench/rebuild.py [--events 10000 100000] [--events 1000000]

Each rebuild (reset + catch-up of all projections, batches of 5,000, then
the digests) runs in a fresh subprocess so its peak RSS is its own. Floor:
a bare read of the same log rows.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time

from _data import TENANT, remove_database, seeded_sqlite

from decisiongraph.store.sqlite import SQLiteEventStore


def child(path: str) -> None:
    store = SQLiteEventStore(path)
    store.reset_projections(TENANT)
    started = time.perf_counter()
    applied = store.project_pending(TENANT, batch_size=5000)
    rebuild = time.perf_counter() - started
    started = time.perf_counter()
    store.digests(TENANT)
    digests = time.perf_counter() - started
    started = time.perf_counter()
    rows = sum(1 for _ in store.iter_raw_rows(TENANT))
    floor = rows / (time.perf_counter() - started)
    store.close()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "events": applied,
                "rebuild_s": rebuild,
                "digests_s": digests,
                "peak_mb": peak_mb,
                "floor_rows_s": floor,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    for events in args.events:
        source = seeded_sqlite(events)
        work = source.with_name(f"rebuild-{events}.db")
        shutil.copy(source, work)
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(work)],
            capture_output=True,
            text=True,
            check=True,
        )
        remove_database(work)
        result = json.loads(out.stdout)
        print(
            f"rebuild {result['events']:>9,} events  {result['rebuild_s']:7.2f} s  "
            f"({result['events'] / result['rebuild_s']:,.0f} ev/s)  "
            f"digests {result['digests_s']:.2f} s  peak RSS {result['peak_mb']:.0f} MB   "
            f"(floor: raw read {result['floor_rows_s']:,.0f} rows/s)"
        )


if __name__ == "__main__":
    main()
