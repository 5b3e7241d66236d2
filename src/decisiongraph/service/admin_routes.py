"""Operator endpoints: dead letters, replay, online rebuild, the audit log.

Every admin action needs the ``admin`` scope and a reason; destructive ones
also a typed confirmation; each is written to the audit log.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Query, Request

from decisiongraph.query.traces import TraceFilter
from decisiongraph.query.traces import list_traces as list_trace_page
from decisiongraph.runtime import operations
from decisiongraph.service import models as m

Caller = Callable[[Request, str, Callable[[Any, str], Any]], Awaitable[Any]]


def register(app: FastAPI, call: Caller) -> None:
    @app.get("/api/v1/traces", response_model=m.TraceListResponse)
    async def list_traces(
        request: Request,
        workflow: str | None = None,
        outcome: str | None = None,
        entity_type: str | None = None,
        entity_id: str | None = None,
        since: int | None = Query(
            default=None, ge=0, description="only traces changed after this log_seq"
        ),
        cursor: str | None = None,
        limit: int = Query(default=100, ge=1, le=1000),
    ) -> m.TraceListResponse:
        filters = TraceFilter(workflow, outcome, entity_type, entity_id, since)
        page = await call(
            request,
            "events:read",
            lambda store, tenant: list_trace_page(store, tenant, filters, cursor, limit),
        )
        traces = [m.TraceSummaryOut.model_validate(t, from_attributes=True) for t in page.traces]
        return m.TraceListResponse(traces=traces, next_cursor=page.next_cursor)

    @app.get("/api/v1/projections/dead-letters", response_model=m.DeadLettersResponse)
    async def dead_letters(request: Request, status: str | None = None) -> m.DeadLettersResponse:
        letters = await call(
            request, "events:read", lambda store, tenant: store.dead_letters(tenant, status=status)
        )
        return m.DeadLettersResponse(
            dead_letters=[m.DeadLetterOut.model_validate(letter.as_dict()) for letter in letters]
        )

    def actor(request: Request) -> str:
        return str(getattr(request.state, "account", "unknown"))

    @app.post("/api/v1/admin/dead-letters/{letter_id}/retry", response_model=m.DeadLetterOut)
    async def retry(request: Request, letter_id: int, body: m.ReasonIn) -> m.DeadLetterOut:
        letter = await call(
            request,
            "admin",
            lambda store, tenant: operations.retry_dead_letter(
                store, tenant, letter_id, actor=actor(request), reason=body.reason
            ),
        )
        return m.DeadLetterOut.model_validate(letter.as_dict())

    @app.post("/api/v1/admin/dead-letters/{letter_id}/skip", response_model=m.DeadLetterOut)
    async def skip(request: Request, letter_id: int, body: m.SkipIn) -> m.DeadLetterOut:
        letter = await call(
            request,
            "admin",
            lambda store, tenant: operations.skip_dead_letter(
                store,
                tenant,
                letter_id,
                actor=actor(request),
                reason=body.reason,
                confirm=body.confirm,
            ),
        )
        return m.DeadLetterOut.model_validate(letter.as_dict())

    @app.post("/api/v1/admin/replay", response_model=m.ReplayResponse)
    async def replay(request: Request, body: m.ReplayIn) -> m.ReplayResponse:
        digests = await call(
            request,
            "admin",
            lambda store, tenant: operations.replay(
                store, tenant, actor=actor(request), reason=body.reason, to_log_seq=body.to_log_seq
            ),
        )
        return m.ReplayResponse(
            to_log_seq=body.to_log_seq, digests=m.DigestsOut(**digests.as_dict())
        )

    @app.post("/api/v1/admin/rebuild", response_model=m.RebuildResponse)
    async def rebuild(request: Request, body: m.RebuildIn) -> m.RebuildResponse:
        cursor = await call(
            request,
            "admin",
            lambda store, tenant: operations.rebuild(
                store,
                tenant,
                body.projection,
                actor=actor(request),
                reason=body.reason,
                confirm=body.confirm,
            ),
        )
        return m.RebuildResponse(projection=body.projection, cursor=cursor)

    @app.get("/api/v1/admin/audit", response_model=m.AuditResponse)
    async def audit(
        request: Request, limit: int = Query(default=100, ge=1, le=1000)
    ) -> m.AuditResponse:
        entries = await call(request, "admin", lambda store, tenant: store.audit_log(tenant, limit))
        return m.AuditResponse(
            entries=[
                m.AuditOut(
                    id=e.id,
                    tenant_id=e.tenant_id,
                    at=e.at,
                    actor=e.actor,
                    action=e.action,
                    target=e.target,
                    reason=e.reason,
                    details=e.details,
                )
                for e in entries
            ]
        )
