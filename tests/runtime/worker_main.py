"""Launcher for a real projection worker process, used by the runtime tests.

    python tests/runtime/worker_main.py URL [--batch-size N] [--lease-ttl S]
        [--poll-interval S] [--max-attempts N] [--tenant T ...]

Defaults can also come from the environment (DG_TEST_BATCH_SIZE,
DG_TEST_LEASE_TTL, DG_TEST_POLL_INTERVAL). It runs
:func:`decisiongraph.runtime.process.run_worker_process` until SIGTERM/SIGINT
and exits 0 after the drain; anything else is a non-zero exit.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from decisiongraph.runtime.process import run_worker_process
from decisiongraph.runtime.supervisor import SupervisorConfig


def parse(argv: list[str]) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--batch-size", type=int, default=int(env("DG_TEST_BATCH_SIZE", "100")))
    parser.add_argument("--lease-ttl", type=float, default=float(env("DG_TEST_LEASE_TTL", "1.5")))
    parser.add_argument(
        "--poll-interval", type=float, default=float(env("DG_TEST_POLL_INTERVAL", "0.1"))
    )
    parser.add_argument("--max-attempts", type=int, default=5)
    parser.add_argument("--tenant", action="append", default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(process)d %(threadName)s %(message)s"
    )
    config = SupervisorConfig(
        tenants=args.tenant,
        batch_size=args.batch_size,
        lease_ttl=args.lease_ttl,
        poll_interval=args.poll_interval,
        max_attempts=args.max_attempts,
    )
    run_worker_process(args.url, config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
