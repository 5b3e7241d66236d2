"""One projection worker: owns a (tenant, projection) and applies its batches.

``step`` does one unit of work and returns; the supervisor loops, waits and
restarts. Exactly-once application does not rest on the lease: each batch
takes the projection's lock and re-reads its cursor inside the transaction
that writes rows and cursor, so two workers can never apply an event twice,
and a crash mid-batch rolls the whole batch back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from decisiongraph.core.clock import now_timestamp
from decisiongraph.core.errors import STORAGE, DecisionGraphError, describe_failure
from decisiongraph.runtime.backoff import Backoff
from decisiongraph.store.sql_base import SqlEventStore
from decisiongraph.store.transient import is_transient

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Failure:
    log_seq: int
    attempts: int
    first_seen_at: str
    retry_at: float


@dataclass(slots=True)
class Outage:
    """The database's trouble (see :mod:`decisiongraph.store.transient`): no
    event's fault, so it is waited out however long it lasts."""

    attempts: int
    error: str
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
    # Capped: a long outage is retried every few seconds until it ends.
    outage_backoff: Backoff = field(default_factory=lambda: Backoff(base=0.1, cap=5.0))
    #: True once the supervisor stops: a transient failure is then most
    #: likely its own cancel (see ``Supervisor.stop``), not an outage.
    stopping: Callable[[], bool] = lambda: False
    owns_lease: bool = False
    parked: bool = False
    _failure: _Failure | None = None
    _outage: Outage | None = None
    _renewed_at: float = -1e9
    _letters_checked_at: float = -1e9
    _retrying: bool = False
    # A worker before this one (another process, or this thread before a
    # restart) may have left an error behind that no one will clear.
    _error_may_linger: bool = True

    @property
    def outage(self) -> Outage | None:
        """The database trouble being waited out, if any."""
        return self._outage

    def step(self) -> int:
        """Apply at most one batch; returns log events applied (0: nothing to do now).

        Failures caused by an event count against it (see ``_isolate_failure``);
        the database's own trouble (a lock timeout, a lost connection) counts
        against nothing: it is recorded as the projection's last error and
        retried with capped backoff. A connection that is gone for good is
        left to the supervisor, which opens a new store. While stopping, such
        a failure (a statement cancelled on the way out) is not recorded:
        its batch rolled back and no retry will follow.
        """
        if self._outage is not None and time.monotonic() < self._outage.retry_at:
            return 0
        try:
            applied = self._step()
        except Exception as exc:
            if not is_transient(exc):
                raise
            if self.stopping():
                log.debug(
                    "projection %s of tenant %s: step ended by the stop (%s)",
                    self.projection,
                    self.tenant_id,
                    exc,
                )
            else:
                self._wait_out(exc)
            if self.store.connection_lost():
                raise
            return 0
        if self._outage is not None:
            self._outage_over()
        return applied

    def seconds_until_retry(self) -> float | None:
        due = [x.retry_at for x in (self._failure, self._outage) if x is not None]
        if not due:
            return None
        return max(min(due) - time.monotonic(), 0.0)

    def _step(self) -> int:
        """One unit of work; the lease is renewed every third of its time to
        live and dead letters are looked at once a second, so an idle wake-up
        costs one transaction."""
        now = time.monotonic()
        if not self.owns_lease or now - self._renewed_at > self.lease_ttl / 3:
            self.owns_lease = self.store.acquire_lease(
                self.tenant_id, self.projection, self.owner, self.lease_ttl
            )
            self._renewed_at = now
            if not self.owns_lease:
                return 0
        if self.parked or now - self._letters_checked_at > 1.0:
            self._check_letters()
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
        except Exception as exc:  # a bug in a fold fails the event like bad data does
            if is_transient(exc):
                raise
            cursor = self.store.projection_cursor(self.tenant_id, self.projection)
            return self._isolate_failure(cursor + self.batch_size)
        if applied:
            self._succeeded()
        return applied

    def _check_letters(self) -> None:
        """Park at an open dead letter; letters the projection has applied
        past meanwhile (a rebuild after the fix) are settled instead."""
        letters = self.store.dead_letters(self.tenant_id, projection=self.projection)
        pending = [letter for letter in letters if letter.status in ("open", "retry")]
        if pending:
            cursor = self.store.projection_cursor(self.tenant_id, self.projection)
            if any(letter.log_seq <= cursor for letter in pending):
                self.store.mark_dead_letters_resolved(
                    self.tenant_id, self.projection, cursor, include_open=True
                )
                pending = [letter for letter in pending if letter.log_seq > cursor]
        self.parked = any(letter.status == "open" for letter in pending)
        self._retrying = any(letter.status == "retry" for letter in pending)

    def _succeeded(self) -> None:
        if self._failure is not None or self._retrying:
            cursor = self.store.projection_cursor(self.tenant_id, self.projection)
            self.store.mark_dead_letters_resolved(self.tenant_id, self.projection, cursor)
            self._retrying = False
        elif self._error_may_linger:
            self.store.set_projection_error(self.tenant_id, self.projection, None)
        self._error_may_linger = False
        self._failure = None

    def _isolate_failure(self, until: int) -> int:
        """Apply the good events one by one, then account for the bad one."""
        before = self.store.projection_cursor(self.tenant_id, self.projection)
        try:
            self.store.project_pending(
                self.tenant_id, batch_size=1, until_log_seq=until, projections=[self.projection]
            )
        except Exception as exc:
            if is_transient(exc):
                raise
            cursor = self.store.projection_cursor(self.tenant_id, self.projection)
            self._record_failure(cursor + 1, exc)
            return cursor - before
        return self.store.projection_cursor(self.tenant_id, self.projection) - before

    def _record_failure(self, log_seq: int, exc: Exception) -> None:
        failure = self._failure
        if failure is None or failure.log_seq != log_seq:
            failure = _Failure(log_seq, 0, now_timestamp(), 0.0)
        failure.attempts += 1
        code, text = describe_failure(exc)
        # A bug's traceback is what its fixer needs; a domain error says it all.
        trace = None if isinstance(exc, DecisionGraphError) else exc
        if failure.attempts >= self.max_attempts:
            # The id alone, never the decoded event: what failed may be the
            # stored payload itself, which must still be dead-lettered.
            event_id = self.store.event_id_at(self.tenant_id, log_seq) or ""
            self.store.add_dead_letter(
                self.tenant_id,
                self.projection,
                log_seq,
                event_id,
                code,
                text,
                failure.attempts,
                failure.first_seen_at,
            )
            log.error(
                "projection %s of tenant %s: log_seq %d (event %s) dead-lettered after %d "
                "attempts in a row (%s: %s); the projection stops there until an operator "
                "retries or skips it",
                self.projection,
                self.tenant_id,
                log_seq,
                event_id,
                failure.attempts,
                code,
                text,
                exc_info=trace,
            )
            self._failure = None
            self.parked = True
            self._letters_checked_at = time.monotonic()
            return
        self.store.set_projection_error(self.tenant_id, self.projection, f"{code}: {text}")
        delay = self.backoff.delay(failure.attempts)
        failure.retry_at = time.monotonic() + delay
        self._failure = failure
        log.warning(
            "projection %s of tenant %s: log_seq %d failed (attempt %d of %d, %s: %s); "
            "retrying in %.2fs",
            self.projection,
            self.tenant_id,
            log_seq,
            failure.attempts,
            self.max_attempts,
            code,
            text,
            delay,
            exc_info=trace,
        )

    def _wait_out(self, exc: Exception) -> None:
        """Record the database's trouble and schedule the next try.

        Logged on the first attempt and then on attempts 2, 4, 8, ... so a
        long outage does not flood the log.
        """
        attempts = 1 if self._outage is None else self._outage.attempts + 1
        code, text = describe_failure(exc, STORAGE)  # a raw driver error is still storage
        message = f"{code}: {text}"
        delay = self.outage_backoff.delay(attempts)
        self._outage = Outage(attempts, message, time.monotonic() + delay)
        if attempts & (attempts - 1) == 0:
            log.warning(
                "projection %s of tenant %s: the database failed, not the event "
                "(attempt %d, retrying in %.2fs): %s",
                self.projection,
                self.tenant_id,
                attempts,
                delay,
                message,
            )
        if self.parked:
            return  # the dead letter's error is the one that holds the projection
        try:
            self.store.set_projection_error(self.tenant_id, self.projection, message)
        except Exception:  # the same trouble may keep us from writing it down
            log.debug("could not record the outage", exc_info=True)

    def _outage_over(self) -> None:
        outage = self._outage
        self._outage = None
        if outage is None:
            return
        log.info(
            "projection %s of tenant %s: the database is back after %d attempt(s)",
            self.projection,
            self.tenant_id,
            outage.attempts,
        )
        if self._failure is None and not self.parked:  # else the event's error stands
            self.store.set_projection_error(self.tenant_id, self.projection, None)
