"""One projection worker: owns a (tenant, projection) and applies its batches.

``step`` does one unit of work and returns; the supervisor loops, waits and
restarts. Exactly-once application does not rest on the lease: each batch
takes the projection's lock and re-reads its cursor inside the transaction
that writes rows and cursor, so two workers can never apply an event twice,
and a crash mid-batch rolls the whole batch back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from decisiongraph.core.clock import now_timestamp
from decisiongraph.core.errors import DecisionGraphError
from decisiongraph.runtime.backoff import Backoff
from decisiongraph.store.sql_base import SqlEventStore


@dataclass(slots=True)
class _Failure:
    log_seq: int
    attempts: int
    first_seen_at: str
    retry_at: float


@dataclass(slots=True)
class ProjectionWorker:
    store: SqlEventStore
    tenant_id: str
    projection: str
    owner: str
    batch_size: int = 1000
    lease_ttl: float = 10.0
    max_attempts: int = 5
    backoff: Backoff = field(default_factory=lambda: Backoff(base=0.05, cap=5.0))
    owns_lease: bool = False
    parked: bool = False
    _failure: _Failure | None = None
    _renewed_at: float = -1e9
    _letters_checked_at: float = -1e9
    _retrying: bool = False

    def step(self) -> int:
        """Apply at most one batch; returns log events applied (0: nothing to do now).

        The lease is renewed every third of its time to live and dead letters
        are looked at once a second, so an idle wake-up costs one transaction.
        """
        now = time.monotonic()
        if not self.owns_lease or now - self._renewed_at > self.lease_ttl / 3:
            self.owns_lease = self.store.acquire_lease(
                self.tenant_id, self.projection, self.owner, self.lease_ttl
            )
            self._renewed_at = now
            if not self.owns_lease:
                return 0
        if self.parked or now - self._letters_checked_at > 1.0:
            letters = self.store.dead_letters(self.tenant_id, projection=self.projection)
            self.parked = any(letter.status == "open" for letter in letters)
            self._retrying = any(letter.status == "retry" for letter in letters)
            self._letters_checked_at = now
            if self.parked:
                return 0  # stopped at the dead letter until an operator acts
        if self._failure is not None and now < self._failure.retry_at:
            return 0
        try:
            applied = self.store.project_pending(
                self.tenant_id,
                batch_size=self.batch_size,
                projections=[self.projection],
                max_batches=1,
            )
        except DecisionGraphError:
            cursor = self.store.projection_cursor(self.tenant_id, self.projection)
            return self._isolate_failure(cursor + self.batch_size)
        if applied:
            self._succeeded()
        return applied

    def seconds_until_retry(self) -> float | None:
        if self._failure is None:
            return None
        return max(self._failure.retry_at - time.monotonic(), 0.0)

    def _succeeded(self) -> None:
        if self._failure is not None or self._retrying:
            cursor = self.store.projection_cursor(self.tenant_id, self.projection)
            self.store.mark_dead_letters_resolved(self.tenant_id, self.projection, cursor)
            self._retrying = False
        self._failure = None

    def _isolate_failure(self, until: int) -> int:
        """Apply the good events one by one, then account for the bad one."""
        before = self.store.projection_cursor(self.tenant_id, self.projection)
        try:
            self.store.project_pending(
                self.tenant_id, batch_size=1, until_log_seq=until, projections=[self.projection]
            )
        except DecisionGraphError as exc:
            cursor = self.store.projection_cursor(self.tenant_id, self.projection)
            self._record_failure(cursor + 1, exc)
            return cursor - before
        return self.store.projection_cursor(self.tenant_id, self.projection) - before

    def _record_failure(self, log_seq: int, exc: DecisionGraphError) -> None:
        failure = self._failure
        if failure is None or failure.log_seq != log_seq:
            failure = _Failure(log_seq, 0, now_timestamp(), 0.0)
        failure.attempts += 1
        message = f"{exc.code}: {exc.message}"
        if failure.attempts >= self.max_attempts:
            events = self.store.list_events(self.tenant_id, since_log_seq=log_seq - 1, limit=1)
            event_id = events[0].event_id if events else ""
            self.store.add_dead_letter(
                self.tenant_id,
                self.projection,
                log_seq,
                event_id,
                exc.code,
                exc.message,
                failure.attempts,
                failure.first_seen_at,
            )
            self._failure = None
            self.parked = True
            self._letters_checked_at = time.monotonic()
            return
        self.store.set_projection_error(self.tenant_id, self.projection, message)
        failure.retry_at = time.monotonic() + self.backoff.delay(failure.attempts)
        self._failure = failure
