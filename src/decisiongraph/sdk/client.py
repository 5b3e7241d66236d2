"""``Client``: DecisionGraph over HTTP for agents.

It satisfies the same ``DecisionGraphAPI`` protocol as the embedded
``DecisionGraph``: the same typed helpers (from ``core.helpers``), the same
``trace()`` scope, and reads that return the library's own result types
(``StoredEvent``, ``TraceSummary``, ``Subgraph``, ``EdgePage``,
``PrecedentHit``, ``ProjectionHealth`` ...). Beyond the protocol: trace
listing across pages, the live ``stream()``, and buffered delivery.

Calls are retried on connection errors, 5xx and 429 (honouring
Retry-After) with unchanged idempotency keys. With ``buffered=True``
appends return a ``SpooledEvent`` at once and a background batcher
delivers them (see ``sdk.batcher`` for exactly when an event is durable).
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import httpx

from decisiongraph.core.canonical_json import loads
from decisiongraph.core.clock import Clock, format_timestamp, system_clock
from decisiongraph.core.envelope import EventEnvelope, StoredEvent, envelopes_from
from decisiongraph.core.errors import DecisionGraphError, NotFoundError
from decisiongraph.core.event_types import TRACE_STARTED
from decisiongraph.core.helpers import (
    ActorLike,
    EventHelpers,
    SourceLike,
    default_idempotency_key,
)
from decisiongraph.core.operator_records import AuditEntry, DeadLetter
from decisiongraph.projections.digests import Digests
from decisiongraph.projections.rows import PROJECTION_NAMES, check_projection_names
from decisiongraph.query.graph import EdgePage, GraphEdgeCursor, GraphFilter, Subgraph
from decisiongraph.query.health import ProjectionHealth
from decisiongraph.query.precedents import PrecedentHit
from decisiongraph.query.traces import TracePage, TraceSummary
from decisiongraph.runtime.health import ProjectionStatus
from decisiongraph.runtime.wait import check_wait_args
from decisiongraph.sdk import calls
from decisiongraph.sdk.batcher import Batcher, DeliveryStatus, auth_headers, open_buffered
from decisiongraph.sdk.errors import (
    NOT_SENT,
    RETRYABLE_STATUSES,
    STALE_POSITION_CODES,
    error_from_response,
    unavailable,
)
from decisiongraph.sdk.results import AppendResult, SpooledEvent, appended_event, stored_event
from decisiongraph.sdk.retry import RetryPolicy

T = TypeVar("T")


def renumbered(envelope: EventEnvelope, trace_seq: int) -> EventEnvelope:
    """``envelope`` at another position: the same event id; a default
    idempotency key (it names the position) follows the event there, a key of
    the caller's own (or ``start:``/``finish:``) is kept."""
    key = envelope.idempotency_key
    if key == default_idempotency_key(envelope.event_type, envelope.trace_id, envelope.trace_seq):
        key = default_idempotency_key(envelope.event_type, envelope.trace_id, trace_seq)
    return dataclasses.replace(envelope, trace_seq=trace_seq, idempotency_key=key)


def batch_body(envelopes: Sequence[EventEnvelope]) -> bytes:
    return json.dumps(
        {"events": [e.to_dict() for e in envelopes]}, ensure_ascii=False, separators=(",", ":")
    ).encode("utf-8")


class SseParser:
    """Server-Sent Events, one line at a time (sync and async streams share it)."""

    def __init__(self) -> None:
        self._data: list[str] = []
        self._id: int | None = None

    def feed(self, line: str) -> tuple[int | None, str | None] | None:
        """``(id, data)`` when ``line`` completes an event, else None.

        The server's opening comment ``: resuming after N`` comes out as
        ``(N, None)``: the position a stream opened "from now" starts at.
        """
        if line.startswith("data:"):
            self._data.append(line[5:].removeprefix(" "))
        elif line.startswith("id:"):
            text = line[3:].strip()
            self._id = int(text) if text.isascii() and text.isdigit() else None
        elif line.startswith(": resuming after "):
            text = line.removeprefix(": resuming after ").strip()
            if text.isascii() and text.isdigit():
                return int(text), None
        elif line == "":
            found = (self._id, "\n".join(self._data)) if self._data else None
            self._data, self._id = [], None
            return found
        return None


class Client(EventHelpers[AppendResult]):
    """A DecisionGraph server, seen by one agent (thread-safe)."""

    def __init__(
        self,
        url: str,
        api_key: str,
        tenant: str | None = None,
        *,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        buffered: bool = False,
        spool_path: str | None = None,
        max_batch: int = 1000,
        flush_interval: float = 0.2,
        close_timeout: float = 5.0,
        clock: Clock = system_clock,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """``buffered``: appends go through a background batcher; ``spool_path``
        is its durable SQLite file (default: in memory, so not durable)."""
        headers = auth_headers(api_key, tenant)
        self._http = httpx.Client(
            base_url=url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )
        self.tenant = tenant
        self._clock = clock  # occurred_at of appends that do not give one
        self._retry = retry or RetryPolicy()
        self._seq_lock = threading.Lock()
        self._next_seq: dict[str, int] = {}
        self._trace_locks: dict[str, threading.Lock] = {}
        self._batcher: Batcher | None = None
        self._sender_http: httpx.Client | None = None
        if buffered:
            self._sender_http, self._batcher = open_buffered(
                url,
                headers,
                tenant,
                timeout=timeout,
                transport=transport,
                spool_path=spool_path,
                retry=self._retry,
                max_batch=max_batch,
                flush_interval=flush_interval,
                close_timeout=close_timeout,
            )
            # Traces an earlier process left in the spool continue after it.
            self._next_seq.update(self._batcher.spooled_positions())

    # -- plumbing ------------------------------------------------------------
    def _request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        params: Mapping[str, Any] | None = None,
        idempotent: bool = True,
    ) -> httpx.Response:
        """One call, retried on connection errors, 5xx and 429.

        A call that must not run twice (``idempotent=False``: the audited
        operator actions) is retried only when it provably never reached the
        server: a failed connect, or a 429 (refused before it ran). A
        transport failure comes out as the library's typed error.
        """
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.request(
                    method,
                    path,
                    params=calls.query_params(params or {}),
                    content=content,
                    headers={"content-type": "application/json"} if content is not None else None,
                )
            except httpx.TransportError as exc:
                if attempt >= self._retry.attempts or not (idempotent or isinstance(exc, NOT_SENT)):
                    raise unavailable(exc) from exc
                time.sleep(self._retry.delay(attempt))
                continue
            if response.status_code < 400:
                return response
            if (
                response.status_code in RETRYABLE_STATUSES
                and (idempotent or response.status_code == 429)
                and attempt < self._retry.attempts
            ):
                time.sleep(self._retry.delay(attempt, response.headers.get("retry-after")))
                continue
            raise error_from_response(response)

    def _get(self, call: calls.Call[T]) -> T:
        response = self._request(
            call.method,
            call.path,
            content=call.body,
            params=call.params,
            idempotent=call.idempotent,
        )
        return call.decode(response.json())

    def close(self) -> None:
        """Flush the batcher (up to ``close_timeout``; the rest stays spooled), then
        close the connections."""
        if self._batcher is not None:
            self._batcher.close()
        if self._sender_http is not None:
            self._sender_http.close()
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- appends ---------------------------------------------------------------
    def append_events(
        self, envelopes: Iterable[EventEnvelope | Mapping[str, Any]]
    ) -> list[StoredEvent]:
        """Append fully specified envelopes in one transaction (≤ 1,000), at once
        (also on a buffered client). Nothing to append is no request: ``[]``,
        as the embedded library answers."""
        items = envelopes_from(envelopes)
        if not items:
            return []
        response = self._request("POST", "/api/v1/events", content=batch_body(items))
        receipts = response.json()["events"]
        return [appended_event(e, r) for e, r in zip(items, receipts, strict=True)]

    def _trace_seq(self, trace_id: str, event_type: str) -> int:
        with self._seq_lock:
            known = self._next_seq.get(trace_id)
            if known is not None:
                self._next_seq[trace_id] = known + 1
                return known
        known = 0 if event_type == TRACE_STARTED else self._server_next_seq(trace_id)
        with self._seq_lock:
            seq = max(known, self._next_seq.get(trace_id, 0))
            self._next_seq[trace_id] = seq + 1
        return seq

    def _server_next_seq(self, trace_id: str) -> int:
        try:
            events = self.get_trace_events(trace_id)
        except NotFoundError:
            return 0
        return events[-1].trace_seq + 1

    def _trace_lock(self, trace_id: str) -> threading.Lock:
        with self._seq_lock:
            lock = self._trace_locks.get(trace_id)
            if lock is None:
                lock = self._trace_locks[trace_id] = threading.Lock()
            return lock

    def append_event(
        self,
        trace_id: str,
        event_type: str,
        payload: dict[str, Any],
        source: SourceLike,
        actor: ActorLike,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
        causation_event_id: str | None = None,
        schema_version: int = 1,
        tags: Sequence[str] | None = None,
        occurred_at: str | None = None,
    ) -> AppendResult:
        """Append one event at the trace's next position.

        Returns the ``StoredEvent``; a buffered client returns a
        ``SpooledEvent`` at once instead. Buffered: do not change
        ``payload`` after the call, it is serialized later, on the
        batcher's thread.
        """
        stamp = occurred_at or format_timestamp(self._clock())
        if self._batcher is not None:
            return self._hand_over(
                self._batcher,
                trace_id,
                event_type,
                payload,
                source,
                actor,
                stamp,
                idempotency_key,
                correlation_id,
                causation_event_id,
                schema_version,
                tags,
            )
        with self._trace_lock(trace_id):  # positions are used in the order handed out
            trace_seq = self._trace_seq(trace_id, event_type)
            envelope = self.build_envelope(
                trace_id,
                trace_seq,
                event_type,
                payload,
                source,
                actor,
                stamp,
                idempotency_key,
                correlation_id,
                causation_event_id,
                schema_version,
                tags,
            )
            try:
                return self.append_events([envelope])[0]
            except DecisionGraphError as exc:
                with self._seq_lock:  # the position was not used
                    if self._next_seq.get(trace_id) == trace_seq + 1:
                        self._next_seq[trace_id] = trace_seq
                fresh = self._fresh_position(exc, envelope)
                if fresh is None:
                    raise
            # Another writer moved the trace on: once more, at its real end.
            retry = renumbered(envelope, fresh)
            with self._seq_lock:
                self._next_seq[trace_id] = fresh + 1
            try:
                return self.append_events([retry])[0]
            except DecisionGraphError:
                with self._seq_lock:
                    if self._next_seq.get(trace_id) == fresh + 1:
                        self._next_seq[trace_id] = fresh
                raise

    def _fresh_position(self, exc: DecisionGraphError, envelope: EventEnvelope) -> int | None:
        """The trace's real next position when ``exc`` is a refusal caused by a
        stale remembered one (another writer appended); else None.

        Only a sequence or idempotency refusal can mean that, and only if the
        server's position differs from the one tried; a TraceStarted has one
        possible position. Re-sending elsewhere cannot store the event twice:
        a refusal means it was not stored, and a caller's true retry still
        reuses the first position and key (the remembered position is only
        advanced by a success or by this re-read).
        """
        if exc.code not in STALE_POSITION_CODES or envelope.event_type == TRACE_STARTED:
            return None
        try:
            fresh = self._server_next_seq(envelope.trace_id)
        except DecisionGraphError:
            return None
        return None if fresh == envelope.trace_seq else fresh

    def _hand_over(
        self,
        batcher: Batcher,
        trace_id: str,
        event_type: str,
        payload: dict[str, Any],
        source: SourceLike,
        actor: ActorLike,
        occurred_at: str,
        idempotency_key: str | None,
        correlation_id: str | None,
        causation_event_id: str | None,
        schema_version: int,
        tags: Sequence[str] | None,
    ) -> SpooledEvent:
        """The buffered append: a position, an envelope, a queue hand-off.

        Position and hand-off happen under one lock, so the queue holds each
        trace's events in trace_seq order whatever the threads do. Only an
        unknown trace (not started by this client) costs a server call.
        """
        server_next: int | None = None
        if event_type != TRACE_STARTED:
            with self._seq_lock:
                unknown = trace_id not in self._next_seq
            if unknown:
                server_next = self._server_next_seq(trace_id)
        with self._seq_lock:
            known = self._next_seq.get(trace_id)
            trace_seq = max(known or 0, server_next or 0)
            envelope = self.build_envelope(
                trace_id,
                trace_seq,
                event_type,
                payload,
                source,
                actor,
                occurred_at,
                idempotency_key,
                correlation_id,
                causation_event_id,
                schema_version,
                tags,
            )
            batcher.put(envelope)
            self._next_seq[trace_id] = trace_seq + 1
        return SpooledEvent(
            envelope.event_id,
            trace_id,
            trace_seq,
            event_type,
            envelope.idempotency_key,
            occurred_at,
        )

    # -- buffered delivery -------------------------------------------------------
    def flush(self, timeout: float | None = None, *, raise_on_timeout: bool = True) -> bool:
        """Wait until every event appended before this call is stored by the
        server (or refused for good, see ``delivery_errors``)."""
        if self._batcher is None or self._batcher.flush(timeout):
            return True
        if raise_on_timeout:
            raise TimeoutError(f"{self.pending()} events not yet delivered")
        return False

    def wait_spooled(self, timeout: float | None = None) -> bool:
        """Wait until every event appended before this call is in the spool file
        (safe from a crash of this process); True unless ``timeout`` passed."""
        return self._batcher is None or self._batcher.wait_spooled(timeout)

    def pending(self) -> int:
        """Events appended but not yet stored by the server."""
        return 0 if self._batcher is None else self._batcher.pending()

    def delivery_status(self) -> DeliveryStatus:
        """Buffered delivery at a glance: events pending, whether delivery is
        stalled (server down, key refused) and the last error; never stalled
        when not buffered."""
        if self._batcher is None:
            return DeliveryStatus(0, False, None)
        return self._batcher.status()

    @property
    def delivery_errors(self) -> list[str]:
        """Why buffered events were refused for good (or delivery stalled)."""
        return [] if self._batcher is None else self._batcher.delivery_errors

    # -- reads -------------------------------------------------------------------
    def get_trace_events(
        self, trace_id: str, since_trace_seq: int | None = None, limit: int | None = None
    ) -> list[StoredEvent]:
        return self._get(calls.trace_events(trace_id, since_trace_seq, limit))

    def get_trace_summary(self, trace_id: str) -> TraceSummary:
        return self._get(calls.trace_summary(trace_id))

    def list_traces(
        self,
        workflow: str | None = None,
        outcome: str | None = None,
        entity_type: str | None = None,
        entity_id: str | None = None,
        since: int | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> TracePage:
        """One page of trace summaries (most recently changed last)."""
        return self._get(
            calls.list_traces(workflow, outcome, entity_type, entity_id, since, cursor, limit)
        )

    def iter_traces(
        self,
        workflow: str | None = None,
        outcome: str | None = None,
        entity_type: str | None = None,
        entity_id: str | None = None,
        since: int | None = None,
        page_size: int = 100,
    ) -> Iterator[TraceSummary]:
        """Every matching trace, following the cursor pages."""
        cursor = None
        while True:
            page = self.list_traces(
                workflow, outcome, entity_type, entity_id, since, cursor, page_size
            )
            yield from page.traces
            cursor = page.next_cursor
            if cursor is None:
                return

    def get_context_subgraph(
        self,
        node_type: str,
        node_id: str,
        max_depth: int = 1,
        filter_opts: GraphFilter | None = None,
    ) -> Subgraph:
        return self._get(calls.subgraph(node_type, node_id, max_depth, filter_opts))

    def list_node_edges(
        self,
        node: str,
        direction: str = "both",
        cursor: GraphEdgeCursor | None = None,
        limit: int = 100,
    ) -> EdgePage:
        return self._get(calls.node_edges(node, direction, cursor, limit))

    def find_precedents(
        self,
        policy_id: str | None = None,
        policy_version: str | None = None,
        entity_type: str | None = None,
        entity_id: str | None = None,
        outcome: str | None = None,
        limit: int = 100,
    ) -> list[PrecedentHit]:
        return self._get(
            calls.precedents(policy_id, policy_version, entity_type, entity_id, outcome, limit)
        )

    def get_projection_health(self, include_digests: bool = False) -> ProjectionHealth:
        return self._get(calls.projection_health(include_digests))

    def projection_statuses(self) -> list[ProjectionStatus]:
        return self._get(calls.projection_statuses())

    def digests(self) -> Digests:
        return self._get(calls.digests())

    def ready(self) -> bool:
        """Whether the server answers ``/readyz`` with ready (database reachable,
        migrations current); asked once, without retries."""
        try:
            return self._http.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    # -- operator actions (the admin scope) -------------------------------------------
    def dead_letters(self, status: str | None = None) -> list[DeadLetter]:
        """Events a projection could not apply (``status``: open, retry, skipped, resolved)."""
        return self._get(calls.dead_letters(status))

    def retry_dead_letter(self, letter_id: int, reason: str) -> DeadLetter:
        """Let the projection try the event again, after a fix; audited."""
        return self._get(calls.resolve_dead_letter(letter_id, "retry", reason, None))

    def skip_dead_letter(self, letter_id: int, reason: str, confirm: str) -> DeadLetter:
        """Pass over the event for good; ``confirm`` must be ``"skip"``; audited."""
        return self._get(calls.resolve_dead_letter(letter_id, "skip", reason, confirm))

    def replay(self, reason: str, to_log_seq: int | None = None) -> Digests:
        """Digests as of ``to_log_seq`` (default: now) from a fresh replay; audited."""
        return self._get(calls.replay(reason, to_log_seq))

    def rebuild_projection(self, projection: str, reason: str, confirm: str) -> int:
        """Rebuild one projection online; ``confirm`` repeats its name; audited."""
        return self._get(calls.rebuild(projection, reason, confirm))

    def audit_log(self, limit: int = 100) -> list[AuditEntry]:
        """The tenant's operator actions, newest first."""
        return self._get(calls.audit_log(limit))

    def wait_for(
        self,
        log_seq: int,
        timeout: float = 10.0,
        projections: Sequence[str] = PROJECTION_NAMES,
    ) -> bool:
        """Block until the projections have applied ``log_seq`` (read your writes).

        Returns False if ``timeout`` seconds pass first.
        """
        check_wait_args(log_seq, timeout)  # before any request: nan would never time out
        deadline = time.monotonic() + timeout
        pause = 0.005
        names: tuple[str, ...] | None = None
        while True:
            statuses = self.projection_statuses()
            if names is None:  # a typo is refused at once, as the server names them
                names = check_projection_names(projections, [s.projection for s in statuses])
            if all(s.cursor >= log_seq for s in statuses if s.projection in names):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(pause, max(deadline - time.monotonic(), 0.0)))
            pause = min(pause * 2, 0.2)

    def stream(self, after: int | None = None) -> Iterator[StoredEvent]:
        """Events as they are stored, after ``after`` (default: from the moment
        the first event is asked for — a generator connects lazily).

        Runs forever: a dropped connection is reopened with Last-Event-ID
        (backing off while the server is away), so no event is missed or
        repeated.
        """
        last = after
        attempt = 0
        while True:
            headers = {} if last is None else {"Last-Event-ID": str(last)}
            try:
                with self._http.stream(
                    "GET", "/api/v1/stream", headers=headers, timeout=httpx.Timeout(None)
                ) as response:
                    if response.status_code >= 400:
                        response.read()
                        if response.status_code not in RETRYABLE_STATUSES:
                            raise error_from_response(response)
                        raise httpx.RemoteProtocolError("retryable status")
                    attempt = 0
                    parser = SseParser()
                    for line in response.iter_lines():
                        found = parser.feed(line)
                        if found is None:
                            continue
                        event_id, data = found
                        if data is None:
                            last = event_id if last is None else last
                        elif event_id is not None:  # (no id: projection status news)
                            event = stored_event(loads(data))
                            last = event.log_seq
                            yield event
            except httpx.TransportError:
                pass
            attempt += 1
            time.sleep(self._retry.delay(min(attempt, 6)))
