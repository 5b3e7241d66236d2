"""``AsyncClient``: the SDK for asyncio agents.

The typed helpers are the shared ones: here ``append_event`` returns an
awaitable, so ``await client.observe_entity(...)`` works unchanged, and
``async with client.trace(...)`` finishes the trace like the sync scope.
Reads return the library's result types, like ``Client`` (both send the
same ``sdk.calls``). It satisfies ``AsyncDecisionGraphAPI``.

``buffered=True`` reuses the sync client's batcher: its spool and sender
threads run beside the event loop, so an append costs the loop only the
envelope and a queue hand-off; ``await flush()`` waits in a worker thread.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping, Sequence
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
    TraceScope,
    failure_summary,
    note_finish_failure,
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
from decisiongraph.sdk.client import SseParser, batch_body, renumbered
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


class AsyncTraceScope(TraceScope[Awaitable[AppendResult]]):
    """``async with client.trace(...) as t:`` — ``await t.evaluate_policy(...)``."""

    async def __aenter__(self) -> AsyncTraceScope:
        workflow, title, entity, context, trace_id = self._start
        client = self._client
        assert isinstance(client, AsyncClient)
        self.trace_id = await client.start_trace(
            workflow, title, entity, self.source, self.actor, context=context, trace_id=trace_id
        )
        return self

    async def __aexit__(
        self, exc_type: Any, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.finished:  # the block called ``await t.finish(...)`` itself
            return
        if exc is None:
            await self.finish(self.outcome or "success")
            return
        try:
            await self.finish("failure", summary=failure_summary(exc))
        except Exception as finishing:  # never mask the caller's own exception
            note_finish_failure(exc, self.trace_id, finishing)

    async def finish(self, outcome: str, summary: str | None = None) -> AppendResult:
        """Finish the trace now (leaving the block then leaves it alone)."""
        result = await self._client.finish_trace(
            self.trace_id, outcome, self.source, self.actor, summary
        )
        self.finished = True
        return result


class AsyncClient(EventHelpers[Awaitable[AppendResult]]):
    """A DecisionGraph server for asyncio code (one event loop)."""

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
        transport: httpx.AsyncBaseTransport | None = None,
        sender_transport: httpx.BaseTransport | None = None,
    ) -> None:
        """``sender_transport``: the (sync) transport of the buffered sender thread."""
        headers = auth_headers(api_key, tenant)
        self._http = httpx.AsyncClient(
            base_url=url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )
        self.tenant = tenant
        self._clock = clock  # occurred_at of appends that do not give one
        self._retry = retry or RetryPolicy()
        self._next_seq: dict[str, int] = {}
        self._lock = asyncio.Lock()
        self._trace_locks: dict[str, asyncio.Lock] = {}
        self._batcher: Batcher | None = None
        self._sender_http: httpx.Client | None = None
        if buffered:
            self._sender_http, self._batcher = open_buffered(
                url,
                headers,
                tenant,
                timeout=timeout,
                transport=sender_transport,
                spool_path=spool_path,
                retry=self._retry,
                max_batch=max_batch,
                flush_interval=flush_interval,
                close_timeout=close_timeout,
            )
            # Traces an earlier process left in the spool continue after it.
            self._next_seq.update(self._batcher.spooled_positions())

    async def _request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        params: Mapping[str, Any] | None = None,
        idempotent: bool = True,
    ) -> httpx.Response:
        """One call, retried as ``Client._request`` retries (operator actions
        only when they provably never reached the server); typed errors."""
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._http.request(
                    method,
                    path,
                    params=calls.query_params(params or {}),
                    content=content,
                    headers={"content-type": "application/json"} if content is not None else None,
                )
            except httpx.TransportError as exc:
                if attempt >= self._retry.attempts or not (idempotent or isinstance(exc, NOT_SENT)):
                    raise unavailable(exc) from exc
                await asyncio.sleep(self._retry.delay(attempt))
                continue
            if response.status_code < 400:
                return response
            if (
                response.status_code in RETRYABLE_STATUSES
                and (idempotent or response.status_code == 429)
                and attempt < self._retry.attempts
            ):
                await asyncio.sleep(self._retry.delay(attempt, response.headers.get("retry-after")))
                continue
            raise error_from_response(response)

    async def _get(self, call: calls.Call[T]) -> T:
        response = await self._request(
            call.method,
            call.path,
            content=call.body,
            params=call.params,
            idempotent=call.idempotent,
        )
        return call.decode(response.json())

    async def close(self) -> None:
        """Flush the batcher (up to ``close_timeout``; the rest stays spooled), then
        close the connections."""
        if self._batcher is not None:
            await asyncio.to_thread(self._batcher.close)
        if self._sender_http is not None:
            self._sender_http.close()
        await self._http.aclose()

    aclose = close

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- appends ---------------------------------------------------------------
    async def append_events(
        self, envelopes: Iterable[EventEnvelope | Mapping[str, Any]]
    ) -> list[StoredEvent]:
        items = envelopes_from(envelopes)
        if not items:  # nothing to append is no request, as embedded
            return []
        response = await self._request("POST", "/api/v1/events", content=batch_body(items))
        receipts = response.json()["events"]
        return [appended_event(e, r) for e, r in zip(items, receipts, strict=True)]

    def _trace_lock(self, trace_id: str) -> asyncio.Lock:
        lock = self._trace_locks.get(trace_id)
        if lock is None:
            lock = self._trace_locks[trace_id] = asyncio.Lock()
        return lock

    async def _server_next_seq(self, trace_id: str) -> int:
        try:
            events = await self.get_trace_events(trace_id)
        except NotFoundError:
            return 0
        return events[-1].trace_seq + 1

    async def _fresh_position(self, exc: DecisionGraphError, envelope: EventEnvelope) -> int | None:
        """As ``Client._fresh_position``: the real next position when ``exc``
        was caused by a stale remembered one, else None."""
        if exc.code not in STALE_POSITION_CODES or envelope.event_type == TRACE_STARTED:
            return None
        try:
            fresh = await self._server_next_seq(envelope.trace_id)
        except DecisionGraphError:
            return None
        return None if fresh == envelope.trace_seq else fresh

    async def _trace_seq(self, trace_id: str, event_type: str) -> int:
        async with self._lock:
            if trace_id not in self._next_seq:
                if event_type == TRACE_STARTED:
                    self._next_seq[trace_id] = 0
                else:
                    self._next_seq[trace_id] = await self._server_next_seq(trace_id)
            seq = self._next_seq[trace_id]
            self._next_seq[trace_id] = seq + 1
            return seq

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
    ) -> Awaitable[AppendResult]:
        """An awaitable append at the trace's next position (a ``SpooledEvent``
        when buffered; then do not change ``payload`` afterwards)."""

        def envelope_at(trace_seq: int) -> EventEnvelope:
            return self.build_envelope(
                trace_id,
                trace_seq,
                event_type,
                payload,
                source,
                actor,
                occurred_at or format_timestamp(self._clock()),
                idempotency_key,
                correlation_id,
                causation_event_id,
                schema_version,
                tags,
            )

        async def run() -> AppendResult:
            # Positions are handed out and sent in order, one append per trace
            # at a time: concurrent appends to a trace must not overtake.
            async with self._trace_lock(trace_id):
                trace_seq = await self._trace_seq(trace_id, event_type)
                envelope = envelope_at(trace_seq)
                if self._batcher is not None:
                    self._batcher.put(envelope)
                    return SpooledEvent(
                        envelope.event_id,
                        trace_id,
                        trace_seq,
                        event_type,
                        envelope.idempotency_key,
                        envelope.occurred_at,
                    )
                try:
                    return (await self.append_events([envelope]))[0]
                except DecisionGraphError as exc:
                    async with self._lock:  # the position was not used
                        if self._next_seq.get(trace_id) == trace_seq + 1:
                            self._next_seq[trace_id] = trace_seq
                    fresh = await self._fresh_position(exc, envelope)
                    if fresh is None:
                        raise
                # Another writer moved the trace on: once more, at its real end.
                async with self._lock:
                    self._next_seq[trace_id] = fresh + 1
                try:
                    return (await self.append_events([renumbered(envelope, fresh)]))[0]
                except DecisionGraphError:
                    async with self._lock:
                        if self._next_seq.get(trace_id) == fresh + 1:
                            self._next_seq[trace_id] = fresh
                    raise

        return run()

    async def start_trace(  # type: ignore[override]
        self,
        workflow: str,
        title: str,
        primary_entity: Any,
        source: SourceLike,
        actor: ActorLike,
        context: Mapping[str, str] | None = None,
        trace_id: str | None = None,
        **options: Any,
    ) -> str:
        new_trace, appended = self._start_trace(
            workflow, title, primary_entity, source, actor, context, trace_id, **options
        )
        await appended
        return new_trace

    def trace(
        self,
        workflow: str,
        title: str,
        primary_entity: Any,
        source: SourceLike,
        actor: ActorLike,
        context: Mapping[str, str] | None = None,
        trace_id: str | None = None,
    ) -> AsyncTraceScope:
        return AsyncTraceScope(
            self, workflow, title, primary_entity, source, actor, context, trace_id
        )

    # -- buffered delivery -------------------------------------------------------
    async def flush(self, timeout: float | None = None, *, raise_on_timeout: bool = True) -> bool:
        """Wait until every event appended before this call is stored by the
        server (or refused for good, see ``delivery_errors``)."""
        if self._batcher is None:
            return True
        if await asyncio.to_thread(self._batcher.flush, timeout):
            return True
        if raise_on_timeout:
            raise TimeoutError(f"{self.pending()} events not yet delivered")
        return False

    async def wait_spooled(self, timeout: float | None = None) -> bool:
        """Wait until every event appended before this call is in the spool file."""
        if self._batcher is None:
            return True
        return await asyncio.to_thread(self._batcher.wait_spooled, timeout)

    def pending(self) -> int:
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
        return [] if self._batcher is None else self._batcher.delivery_errors

    # -- reads -------------------------------------------------------------------
    async def get_trace_events(
        self, trace_id: str, since_trace_seq: int | None = None, limit: int | None = None
    ) -> list[StoredEvent]:
        return await self._get(calls.trace_events(trace_id, since_trace_seq, limit))

    async def get_trace_summary(self, trace_id: str) -> TraceSummary:
        return await self._get(calls.trace_summary(trace_id))

    async def list_traces(
        self,
        workflow: str | None = None,
        outcome: str | None = None,
        entity_type: str | None = None,
        entity_id: str | None = None,
        since: int | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> TracePage:
        return await self._get(
            calls.list_traces(workflow, outcome, entity_type, entity_id, since, cursor, limit)
        )

    async def iter_traces(
        self,
        workflow: str | None = None,
        outcome: str | None = None,
        entity_type: str | None = None,
        entity_id: str | None = None,
        since: int | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[TraceSummary]:
        cursor = None
        while True:
            page = await self.list_traces(
                workflow, outcome, entity_type, entity_id, since, cursor, page_size
            )
            for summary in page.traces:
                yield summary
            cursor = page.next_cursor
            if cursor is None:
                return

    async def get_context_subgraph(
        self,
        node_type: str,
        node_id: str,
        max_depth: int = 1,
        filter_opts: GraphFilter | None = None,
    ) -> Subgraph:
        return await self._get(calls.subgraph(node_type, node_id, max_depth, filter_opts))

    async def list_node_edges(
        self,
        node: str,
        direction: str = "both",
        cursor: GraphEdgeCursor | None = None,
        limit: int = 100,
    ) -> EdgePage:
        return await self._get(calls.node_edges(node, direction, cursor, limit))

    async def find_precedents(
        self,
        policy_id: str | None = None,
        policy_version: str | None = None,
        entity_type: str | None = None,
        entity_id: str | None = None,
        outcome: str | None = None,
        limit: int = 100,
    ) -> list[PrecedentHit]:
        return await self._get(
            calls.precedents(policy_id, policy_version, entity_type, entity_id, outcome, limit)
        )

    async def get_projection_health(self, include_digests: bool = False) -> ProjectionHealth:
        return await self._get(calls.projection_health(include_digests))

    async def projection_statuses(self) -> list[ProjectionStatus]:
        return await self._get(calls.projection_statuses())

    async def digests(self) -> Digests:
        return await self._get(calls.digests())

    async def ready(self) -> bool:
        """Whether the server answers ``/readyz`` with ready; asked once, without retries."""
        try:
            return (await self._http.get("/readyz")).status_code == 200
        except httpx.HTTPError:
            return False

    # -- operator actions (the admin scope) -------------------------------------------
    async def dead_letters(self, status: str | None = None) -> list[DeadLetter]:
        return await self._get(calls.dead_letters(status))

    async def retry_dead_letter(self, letter_id: int, reason: str) -> DeadLetter:
        return await self._get(calls.resolve_dead_letter(letter_id, "retry", reason, None))

    async def skip_dead_letter(self, letter_id: int, reason: str, confirm: str) -> DeadLetter:
        return await self._get(calls.resolve_dead_letter(letter_id, "skip", reason, confirm))

    async def replay(self, reason: str, to_log_seq: int | None = None) -> Digests:
        return await self._get(calls.replay(reason, to_log_seq))

    async def rebuild_projection(self, projection: str, reason: str, confirm: str) -> int:
        return await self._get(calls.rebuild(projection, reason, confirm))

    async def audit_log(self, limit: int = 100) -> list[AuditEntry]:
        return await self._get(calls.audit_log(limit))

    async def wait_for(
        self,
        log_seq: int,
        timeout: float = 10.0,
        projections: Sequence[str] = PROJECTION_NAMES,
    ) -> bool:
        check_wait_args(log_seq, timeout)  # before any request: nan would never time out
        deadline = time.monotonic() + timeout
        pause = 0.005
        names: tuple[str, ...] | None = None
        while True:
            statuses = await self.projection_statuses()
            if names is None:  # a typo is refused at once, as the server names them
                names = check_projection_names(projections, [s.projection for s in statuses])
            if all(s.cursor >= log_seq for s in statuses if s.projection in names):
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(min(pause, max(deadline - time.monotonic(), 0.0)))
            pause = min(pause * 2, 0.2)

    async def stream(self, after: int | None = None) -> AsyncIterator[StoredEvent]:
        """Events as they are stored, after ``after`` (default: from the first
        ``anext``, when the generator connects);
        reconnects with Last-Event-ID, so nothing is missed or repeated."""
        last = after
        attempt = 0
        while True:
            headers = {} if last is None else {"Last-Event-ID": str(last)}
            try:
                async with self._http.stream(
                    "GET", "/api/v1/stream", headers=headers, timeout=httpx.Timeout(None)
                ) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        if response.status_code not in RETRYABLE_STATUSES:
                            raise error_from_response(response)
                        raise httpx.RemoteProtocolError("retryable status")
                    attempt = 0
                    parser = SseParser()
                    async for line in response.aiter_lines():
                        found = parser.feed(line)
                        if found is None:
                            continue
                        event_id, data = found
                        if data is None:
                            last = event_id if last is None else last
                        elif event_id is not None:
                            event = stored_event(loads(data))
                            last = event.log_seq
                            yield event
            except httpx.TransportError:
                pass
            attempt += 1
            await asyncio.sleep(self._retry.delay(min(attempt, 6)))
