"""The supervisor: runs a worker per (tenant, projection) and keeps them alive.

Each worker runs in its own thread. A worker that raises is restarted with
exponential backoff and jitter; the supervisor itself never dies of one
worker's failure. ``stop`` lets every in-flight batch finish (a batch is one
transaction), releases leases and returns.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from decisiongraph.projections.rows import PROJECTION_NAMES
from decisiongraph.runtime.backoff import Backoff
from decisiongraph.runtime.wakeup import PostgresListener, Wakeup
from decisiongraph.runtime.worker import ProjectionWorker
from decisiongraph.store.postgres import is_postgres_url
from decisiongraph.store.recent_batches import RecentBatches
from decisiongraph.store.sql_base import SqlEventStore

log = logging.getLogger(__name__)

StoreFactory = Callable[[], SqlEventStore]


def default_owner() -> str:
    """host:pid:random, so an owner names the process that holds a lease."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True, slots=True)
class SupervisorConfig:
    projections: Sequence[str] = PROJECTION_NAMES
    tenants: Sequence[str] | None = None  # None: every tenant, found as they appear
    batch_size: int = 1000
    poll_interval: float = 0.5
    lease_ttl: float = 10.0
    max_attempts: int = 5
    restart_backoff: Backoff = field(default_factory=lambda: Backoff(base=0.2, cap=30.0))
    listen: bool = True  # LISTEN for NOTIFY on PostgreSQL


class Supervisor:
    """Keeps every (tenant, projection) worker running until :meth:`stop`."""

    def __init__(
        self,
        store_factory: StoreFactory,
        config: SupervisorConfig | None = None,
        *,
        owner: str | None = None,
        shared_store: bool = False,
    ) -> None:
        self._factory = store_factory
        self._config = config or SupervisorConfig()
        self.owner = owner or default_owner()
        self._shared = shared_store  # one store for all threads (embedded SQLite)
        self._stop = threading.Event()
        self.wakeup = Wakeup()
        self._threads: dict[tuple[str, str], threading.Thread] = {}
        self._workers: dict[tuple[str, str], ProjectionWorker] = {}
        self._lock = threading.Lock()
        # Workers on stores of their own still decode each batch once.
        self._batches = RecentBatches()
        self._discovery: threading.Thread | None = None
        self.restarts = 0

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> Supervisor:
        store = self._factory()
        store.add_backlog_listener(self._on_backlog)
        self._probe_store = store
        self._listener: PostgresListener | None = None
        if self._config.listen and is_postgres_url(store.url):
            self._listener = PostgresListener(store.url, self.wakeup, self._stop)
            self._listener.start()
        self._discovery = threading.Thread(target=self._discover, name="dg-discover", daemon=True)
        self._discovery.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Finish in-flight batches, release leases, join the threads."""
        self._stop.set()
        self.wakeup.wake()
        for thread in list(self._threads.values()):
            thread.join(timeout)
        if self._discovery is not None:
            self._discovery.join(timeout)
        if self._listener is not None:
            self._listener.join(timeout)
        self._probe_store.remove_backlog_listener(self._on_backlog)
        if not self._shared:
            self._probe_store.close()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def workers(self) -> dict[tuple[str, str], ProjectionWorker]:
        with self._lock:
            return dict(self._workers)

    def _on_backlog(self, tenant_id: str, last_log_seq: int) -> None:
        self.wakeup.wake()

    # -- discovery -------------------------------------------------------------
    def _discover(self) -> None:
        """Start a worker for every (tenant, projection), new tenants included."""
        while not self._stop.is_set():
            try:
                tenants = self._config.tenants or self._probe_store.tenants()
                for tenant_id in tenants:
                    for projection in self._config.projections:
                        key = (tenant_id, projection)
                        if key not in self._threads:
                            thread = threading.Thread(
                                target=self._run_worker,
                                args=key,
                                name=f"dg-{tenant_id}-{projection}",
                                daemon=True,
                            )
                            self._threads[key] = thread
                            thread.start()
            except Exception:  # the store may be unreachable: reopen it and try again
                log.exception("tenant discovery failed")
                if not self._shared:
                    try:
                        self._probe_store.close()
                    except Exception:
                        log.debug("closing the lost probe store failed", exc_info=True)
                    try:
                        self._probe_store = self._factory()
                        self._probe_store.add_backlog_listener(self._on_backlog)
                    except Exception:
                        log.warning("cannot reopen the store for tenant discovery", exc_info=True)
            self._stop.wait(max(self._config.poll_interval, 1.0))

    # -- one worker's life -------------------------------------------------------
    def _run_worker(self, tenant_id: str, projection: str) -> None:
        failures = 0
        store: SqlEventStore | None = None
        worker: ProjectionWorker | None = None
        config = self._config
        while not self._stop.is_set():
            seen = self.wakeup.generation()
            try:
                if worker is None:
                    store = self._factory()
                    store.share_batch_cache(self._batches)
                    worker = ProjectionWorker(
                        store,
                        tenant_id,
                        projection,
                        self.owner,
                        batch_size=config.batch_size,
                        lease_ttl=config.lease_ttl,
                        max_attempts=config.max_attempts,
                    )
                    with self._lock:
                        self._workers[(tenant_id, projection)] = worker
                applied = worker.step()
                if failures and store is not None and not worker.parked and not worker.outage:
                    # Recovered: the crash is no longer news (a parked worker's
                    # error is its dead letter's and stays, a database outage's
                    # stays until it is over).
                    store.set_projection_error(tenant_id, projection, None)
                failures = 0
                if applied:
                    continue
                wait = config.poll_interval
                retry_in = worker.seconds_until_retry()
                if retry_in is not None:
                    wait = min(wait, max(retry_in, 0.01))
                self.wakeup.wait(seen, wait)
            except Exception as exc:
                failures += 1
                self.restarts += 1
                log.warning(
                    "worker %s/%s failed (%s); restarting",
                    tenant_id,
                    projection,
                    exc,
                    exc_info=True,
                )
                if store is not None:
                    try:
                        store.set_projection_error(tenant_id, projection, f"worker crashed: {exc}")
                    except Exception:
                        log.debug("could not record the worker error", exc_info=True)
                    if not self._shared:
                        try:
                            store.close()
                        except Exception:
                            log.debug("could not close the worker's store", exc_info=True)
                store, worker = None, None
                self._stop.wait(config.restart_backoff.delay(failures))
        if worker is not None and store is not None:
            try:
                store.release_lease(tenant_id, projection, self.owner)
            except Exception:
                log.debug("could not release the lease", exc_info=True)
            if not self._shared:
                store.close()
