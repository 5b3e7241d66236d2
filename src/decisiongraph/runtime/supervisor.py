"""The supervisor: runs a worker per (tenant, projection) and keeps them alive.

Each worker runs in its own thread. A worker that raises is restarted with
exponential backoff and jitter; the supervisor itself never dies of one
worker's failure. ``stop`` lets every in-flight batch finish (a batch is one
transaction) for a grace period, cancels the statements of those still
running (one waiting on a lock would outlast any deadline), releases leases
and returns.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from decisiongraph.core.errors import InvalidArgumentError
from decisiongraph.projections.rows import PROJECTION_NAMES
from decisiongraph.runtime.backoff import Backoff
from decisiongraph.runtime.wakeup import PostgresListener, Wakeup
from decisiongraph.runtime.worker import ProjectionWorker
from decisiongraph.runtime.worker_stores import WorkerStores
from decisiongraph.store.postgres import is_postgres_url
from decisiongraph.store.recent_batches import RecentBatches
from decisiongraph.store.sql_base import SqlEventStore
from decisiongraph.store.transient import is_transient

log = logging.getLogger(__name__)

StoreFactory = Callable[[], SqlEventStore]

#: The part of a stop's timeout in-flight batches get to commit on their own,
#: and its cap in seconds. A batch commits well within a second on a healthy
#: database, so one still running after a few seconds is almost surely
#: waiting on a lock (a rebuild's projection lock, a row lock) that may not
#: come free before the deadline; the rest of the timeout, at least half of
#: it, is left for the cancelled statements to roll back and the leases to
#: be released. With the default 30 s: 5 s of grace, then 25 s.
STOP_GRACE_SHARE = 0.5
STOP_GRACE_MAX = 5.0
#: Seconds between cancels while workers stay busy after the grace period.
STOP_CANCEL_EVERY = 1.0


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
    #: Database connections the workers take turns on (see worker_stores),
    #: however many tenants there are; two more serve discovery and LISTEN.
    connections: int = 4

    def __post_init__(self) -> None:
        """Refuse settings that would spin (a zero poll) or never let a dead
        worker's lease go (an infinite time to live)."""
        for name, value, least in (
            ("poll_interval", self.poll_interval, 0.01),
            ("lease_ttl", self.lease_ttl, 1.0),
        ):
            if not (math.isfinite(value) and value >= least):
                raise InvalidArgumentError(
                    f"{name} must be a finite number of seconds, at least {least}, not {value}"
                )
        for name, count in (
            ("batch_size", self.batch_size),
            ("max_attempts", self.max_attempts),
            ("connections", self.connections),
        ):
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise InvalidArgumentError(f"{name} must be a whole number of at least 1")


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
        self._stores = WorkerStores(
            self._factory,
            self._config.connections,
            lambda opened: opened.share_batch_cache(self._batches),
            shared=store if self._shared else None,
        )
        self._listener: PostgresListener | None = None
        if self._config.listen and is_postgres_url(store.url):
            self._listener = PostgresListener(store.url, self.wakeup, self._stop)
            self._listener.start()
        self._discovery = threading.Thread(target=self._discover, name="dg-discover", daemon=True)
        self._discovery.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Finish in-flight batches, release leases, join the threads, all
        within ``timeout`` seconds (a deployment's grace period is one
        deadline, not one per thread).

        Batches get a grace period (see :data:`STOP_GRACE_SHARE`) to commit;
        workers still stepping after it have their statements cancelled (a
        worker waiting on a lock would otherwise keep its lease past the
        deadline). A cancelled batch rolls back, its cursor unmoved, and the
        worker releases its lease on the way out. The shared store of an
        embedded supervisor is never cancelled (see ``cancel_lent``).
        """
        self._stop.set()
        self.wakeup.wake()
        started = time.monotonic()
        deadline = started + timeout
        grace_end = started + min(timeout * STOP_GRACE_SHARE, STOP_GRACE_MAX)
        workers = list(self._threads.values())
        self._join(workers, grace_end)
        cancels = 0
        while time.monotonic() < deadline:
            busy = [thread for thread in workers if thread.is_alive()]
            if not busy:
                break
            # Again while any stays busy: a cancel that reached a connection
            # between two statements of a step is ignored.
            lent = self._stores.cancel_lent()
            if cancels == 0:
                log.info(
                    "%d worker(s) still busy after the stop's grace period; "
                    "cancelled the statements of %d store(s)",
                    len(busy),
                    lent,
                )
            cancels += 1
            self._join(busy, min(deadline, time.monotonic() + STOP_CANCEL_EVERY))
        # Workers again: discovery may have started one after the first look.
        self._join([*list(self._threads.values()), self._discovery, self._listener], deadline)
        self._probe_store.remove_backlog_listener(self._on_backlog)
        self._stores.close()
        if not self._shared:
            self._probe_store.close()

    @staticmethod
    def _join(threads: Sequence[threading.Thread | None], until: float) -> None:
        for thread in threads:
            if thread is not None:
                thread.join(max(until - time.monotonic(), 0.0))

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
            # A new tenant's first append wakes us (NOTIFY, or the embedded
            # store's backlog listener); polling covers lost notifications.
            # Scans are at least a fifth of a second apart however busy.
            seen = self.wakeup.generation()
            if self._stop.wait(0.2):
                return
            self.wakeup.wait(seen, max(self._config.poll_interval, 1.0))

    # -- one worker's life -------------------------------------------------------
    def _run_worker(self, tenant_id: str, projection: str) -> None:
        failures = 0  # crashes since the worker last applied something
        crash_noted = False  # a crash's error is on record (cleared once recovered)
        worker: ProjectionWorker | None = None
        config = self._config
        while not self._stop.is_set():
            seen = self.wakeup.generation()
            try:
                with self._stores.borrow() as store:
                    if worker is None:
                        worker = ProjectionWorker(
                            store,
                            tenant_id,
                            projection,
                            self.owner,
                            batch_size=config.batch_size,
                            lease_ttl=config.lease_ttl,
                            max_attempts=config.max_attempts,
                            stopping=self._stop.is_set,
                        )
                        with self._lock:
                            self._workers[(tenant_id, projection)] = worker
                    if self._stop.is_set():
                        break  # no new batch once stopping (the store may have taken a while)
                    worker.store = store
                    applied = worker.step()
                    if crash_noted and not worker.parked and not worker.outage:
                        # Recovered: the crash is no longer news (a parked
                        # worker's error is its dead letter's and stays, a
                        # database outage's stays until it is over).
                        store.set_projection_error(tenant_id, projection, None)
                        crash_noted = False
                if applied:
                    # Progress: only now is a crash loop over. A worker that
                    # crashes on every few steps still backs off further.
                    failures = 0
                    continue
                wait = config.poll_interval
                retry_in = worker.seconds_until_retry()
                if retry_in is not None:
                    wait = min(wait, max(retry_in, 0.01))
                self.wakeup.wait(seen, wait)
            except Exception as exc:
                if self._stop.is_set() and is_transient(exc):
                    # Most likely stop()'s own cancel: no crash to count.
                    log.debug("worker %s/%s stopped mid-step (%s)", tenant_id, projection, exc)
                    break
                failures += 1
                self.restarts += 1
                log.warning(
                    "worker %s/%s failed (%s); restarting",
                    tenant_id,
                    projection,
                    exc,
                    exc_info=True,
                )
                try:
                    with self._stores.borrow() as store:
                        store.set_projection_error(tenant_id, projection, f"worker crashed: {exc}")
                    crash_noted = True
                except Exception:
                    log.debug("could not record the worker error", exc_info=True)
                worker = None  # a fresh one, on a fresh store (the failed one was closed)
                self._stop.wait(config.restart_backoff.delay(failures))
        # Stopped: hand the lease back now rather than at its expiry, also
        # when stopped while backing off after a crash, or cancelled (a store
        # that failed was closed; this loan opens a fresh one).
        try:
            with self._stores.borrow(interruptible=False) as store:
                store.release_lease(tenant_id, projection, self.owner)
        except Exception:
            log.debug("could not release the lease", exc_info=True)
