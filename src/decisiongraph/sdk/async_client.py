"""``AsyncClient``: the SDK for asyncio agents.

The typed helpers are the same shared ones: here ``append_event`` returns
an awaitable, so ``await client.observe_entity(...)`` works unchanged, and
``async with client.trace(...)`` finishes the trace like the sync scope.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx

from decisiongraph.core.clock import now_timestamp
from decisiongraph.core.envelope import EventEnvelope
from decisiongraph.core.errors import DecisionGraphError, NotFoundError
from decisiongraph.core.event_types import TRACE_STARTED
from decisiongraph.core.helpers import ActorLike, EventHelpers, SourceLike, TraceScope
from decisiongraph.sdk.errors import RETRYABLE_STATUSES, error_from_response
from decisiongraph.sdk.retry import RetryPolicy

Receipt = dict[str, Any]


class AsyncTraceScope(TraceScope[Awaitable[Receipt]]):
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
        if exc is None:
            await self.finish(self.outcome or "success")
        else:
            await self.finish("failure", summary=f"{type(exc).__name__}: {exc}"[:500])


class AsyncClient(EventHelpers[Awaitable[Receipt]]):
    """A DecisionGraph server for asyncio code (one event loop)."""

    def __init__(
        self,
        url: str,
        api_key: str,
        tenant: str | None = None,
        *,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"}
        if tenant is not None:
            headers["X-Tenant-ID"] = tenant
        self._http = httpx.AsyncClient(
            base_url=url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )
        self._retry = retry or RetryPolicy()
        self._next_seq: dict[str, int] = {}
        self._lock = asyncio.Lock()
        self._trace_locks: dict[str, asyncio.Lock] = {}

    async def _request(
        self, method: str, path: str, *, body: Any = None, params: Mapping[str, Any] | None = None
    ) -> httpx.Response:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._http.request(
                    method,
                    path,
                    params={k: v for k, v in (params or {}).items() if v is not None},
                    content=None if body is None else json.dumps(body).encode("utf-8"),
                    headers={"content-type": "application/json"} if body is not None else None,
                )
            except httpx.TransportError:
                if attempt >= self._retry.attempts:
                    raise
                await asyncio.sleep(self._retry.delay(attempt))
                continue
            if response.status_code < 400:
                return response
            if response.status_code in RETRYABLE_STATUSES and attempt < self._retry.attempts:
                await asyncio.sleep(self._retry.delay(attempt, response.headers.get("retry-after")))
                continue
            raise error_from_response(response)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def append_events(
        self, envelopes: Sequence[EventEnvelope | Mapping[str, Any]]
    ) -> list[Receipt]:
        items = [e.to_dict() if isinstance(e, EventEnvelope) else dict(e) for e in envelopes]
        response = await self._request("POST", "/api/v1/events", body={"events": items})
        stored: list[Receipt] = response.json()["events"]
        return stored

    def _trace_lock(self, trace_id: str) -> asyncio.Lock:
        lock = self._trace_locks.get(trace_id)
        if lock is None:
            lock = self._trace_locks[trace_id] = asyncio.Lock()
        return lock

    async def _trace_seq(self, trace_id: str, event_type: str) -> int:
        async with self._lock:
            if trace_id not in self._next_seq:
                if event_type == TRACE_STARTED:
                    self._next_seq[trace_id] = 0
                else:
                    try:
                        events = await self.get_trace_events(trace_id)
                        self._next_seq[trace_id] = int(events[-1]["trace_seq"]) + 1
                    except NotFoundError:
                        self._next_seq[trace_id] = 0
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
    ) -> Awaitable[Receipt]:
        """An awaitable append at the trace's next position."""

        async def run() -> Receipt:
            # Positions are handed out and sent in order, one append per trace
            # at a time: concurrent appends to a trace must not overtake.
            async with self._trace_lock(trace_id):
                return await send()

        async def send() -> Receipt:
            trace_seq = await self._trace_seq(trace_id, event_type)
            envelope = self.build_envelope(
                trace_id,
                trace_seq,
                event_type,
                payload,
                source,
                actor,
                occurred_at or now_timestamp(),
                idempotency_key,
                correlation_id,
                causation_event_id,
                schema_version,
                tags,
            )
            try:
                return (await self.append_events([envelope]))[0]
            except DecisionGraphError:
                async with self._lock:
                    if self._next_seq.get(trace_id) == trace_seq + 1:
                        self._next_seq[trace_id] = trace_seq
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

    async def get_trace(self, trace_id: str) -> dict[str, Any]:
        result: dict[str, Any] = (await self._request("GET", f"/api/v1/traces/{trace_id}")).json()
        return result

    async def get_trace_events(self, trace_id: str) -> list[dict[str, Any]]:
        response = await self._request("GET", f"/api/v1/traces/{trace_id}/events")
        events: list[dict[str, Any]] = response.json()["events"]
        return events

    async def find_precedents(self, **query: Any) -> list[dict[str, Any]]:
        response = await self._request("GET", "/api/v1/precedents", params=query)
        hits: list[dict[str, Any]] = response.json()["precedents"]
        return hits

    async def get_projection_health(self, include_digests: bool = False) -> dict[str, Any]:
        response = await self._request(
            "GET",
            "/api/v1/projections",
            params={"include_digests": "true" if include_digests else None},
        )
        result: dict[str, Any] = response.json()
        return result
