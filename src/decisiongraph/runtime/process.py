"""A worker process: ``decisiongraph worker DB`` runs this until SIGTERM.

Several such processes, on one machine or many, share the work through
leases. SIGTERM or SIGINT stops taking new batches, lets the in-flight batch
commit (on PostgreSQL, one still waiting on a lock after a grace period is
cancelled and rolls back: see ``Supervisor.stop``), releases the leases and
exits 0.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from decisiongraph.runtime.supervisor import Supervisor, SupervisorConfig
from decisiongraph.store.postgres import PostgresEventStore, is_postgres_url
from decisiongraph.store.sql_base import SqlEventStore
from decisiongraph.store.sqlite import SQLiteEventStore

log = logging.getLogger(__name__)


def open_runtime_store(target: str) -> SqlEventStore:
    if is_postgres_url(target):
        return PostgresEventStore(target)
    return SQLiteEventStore(target)


def run_worker_process(
    target: str,
    config: SupervisorConfig | None = None,
    *,
    owner: str | None = None,
    stop: threading.Event | None = None,
) -> Supervisor:
    """Run workers for ``target`` until a signal (or ``stop``) arrives."""
    stop = stop or threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %s: draining", signum)
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    supervisor = Supervisor(lambda: open_runtime_store(target), config, owner=owner).start()
    log.info(
        "worker %s running on %s",
        supervisor.owner,
        target if not is_postgres_url(target) else "postgresql",
    )
    try:
        while not stop.wait(0.5):
            pass
    finally:
        supervisor.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return supervisor


if __name__ == "__main__":  # python -m decisiongraph.runtime.process DB
    import sys

    logging.basicConfig(level=logging.INFO)
    run_worker_process(sys.argv[1])
