"""Operator endpoints: dead letters, replay, online rebuild, the audit log.

Every admin action needs the ``admin`` scope and a reason; destructive ones
also a typed confirmation; each is written to the audit log.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Path, Query, Request

from decisiongraph.query.traces import TraceFilter
from decisiongraph.query.traces import list_traces as list_trace_page
from decisiongraph.runtime import operations
from decisiongraph.service import models as m
from decisiongraph.service.auth import bearer_key, key_id_of
from decisiongraph.service.models import INT64_MAX
from decisiongraph.service.routing import needs

Caller = Callable[[Request, Callable[[Any, str], Any]], Awaitable[Any]]
LetterId = Path(ge=1, le=INT64_MAX)


def register(app: FastAPI, call: Caller) -> None:
    @app.get(
        "/api/v1/traces", response_model=m.TraceListResponse, openapi_extra=needs("events:read")
    )
    async def list_traces(
        request: Request,
        workflow: str | None = None,
        outcome: str | None = None,
        entity_type: str | None = None,
        entity_id: str | None = None,
        since: int | None = Query(
            default=None, ge=0, le=INT64_MAX, description="only traces changed after this log_seq"
        ),
        cursor: str | None = None,
        limit: int = Query(default=100, ge=1, le=1000),
    ) -> m.TraceListResponse:
        filters = TraceFilter(workflow, outcome, entity_type, entity_id, since)
        page = await call(
            request,
            lambda store, tenant: list_trace_page(store, tenant, filters, cursor, limit),
        )
        traces = [m.TraceSummaryOut.model_validate(t, from_attributes=True) for t in page.traces]
        return m.TraceListResponse(traces=traces, next_cursor=page.next_cursor)

    @app.get(
        "/api/v1/projections/dead-letters",
        response_model=m.DeadLettersResponse,
        openapi_extra=needs("events:read"),
    )
    async def dead_letters(
        request: Request,
        status: str | None = Query(default=None, pattern="^(open|retry|resolved|skipped)$"),
    ) -> m.DeadLettersResponse:
        letters = await call(
            request, lambda store, tenant: store.dead_letters(tenant, status=status)
        )
        return m.DeadLettersResponse(
            dead_letters=[m.DeadLetterOut.model_validate(letter.as_dict()) for letter in letters]
        )

    def actor(request: Request) -> str:
        return str(getattr(request.state, "account", "unknown"))

    def context(request: Request) -> dict[str, Any]:
        """Who asked, for the audit entry: the request id (also in the access
        log and the response) and the API key's id, never the key itself."""
        return {
            "request_id": getattr(request.state, "request_id", None),
            "key_id": key_id_of(bearer_key(request)),
        }

    @app.post(
        "/api/v1/admin/dead-letters/{letter_id}/retry",
        response_model=m.DeadLetterOut,
        openapi_extra=needs("admin"),
    )
    async def retry(
        request: Request, body: m.ReasonIn, letter_id: int = LetterId
    ) -> m.DeadLetterOut:
        letter = await call(
            request,
            lambda store, tenant: operations.retry_dead_letter(
                store,
                tenant,
                letter_id,
                actor=actor(request),
                reason=body.reason,
                context=context(request),
            ),
        )
        return m.DeadLetterOut.model_validate(letter.as_dict())

    @app.post(
        "/api/v1/admin/dead-letters/{letter_id}/skip",
        response_model=m.DeadLetterOut,
        openapi_extra=needs("admin"),
    )
    async def skip(request: Request, body: m.SkipIn, letter_id: int = LetterId) -> m.DeadLetterOut:
        letter = await call(
            request,
            lambda store, tenant: operations.skip_dead_letter(
                store,
                tenant,
                letter_id,
                actor=actor(request),
                reason=body.reason,
                confirm=body.confirm,
                context=context(request),
            ),
        )
        return m.DeadLetterOut.model_validate(letter.as_dict())

    @app.post("/api/v1/admin/replay", response_model=m.ReplayResponse, openapi_extra=needs("admin"))
    async def replay(request: Request, body: m.ReplayIn) -> m.ReplayResponse:
        replayed = await call(
            request,
            lambda store, tenant: operations.replay(
                store,
                tenant,
                actor=actor(request),
                reason=body.reason,
                to_log_seq=body.to_log_seq,
                context=context(request),
            ),
        )
        return m.ReplayResponse(
            to_log_seq=body.to_log_seq,
            digests=m.DigestsOut(**replayed.digests.as_dict()),
            skipped=[
                m.SkippedEventOut(projection=name, log_seq=seq)
                for name, seqs in replayed.skipped.items()
                for seq in seqs
            ],
        )

    @app.post(
        "/api/v1/admin/rebuild", response_model=m.RebuildResponse, openapi_extra=needs("admin")
    )
    async def rebuild(request: Request, body: m.RebuildIn) -> m.RebuildResponse:
        cursor = await call(
            request,
            lambda store, tenant: operations.rebuild(
                store,
                tenant,
                body.projection,
                actor=actor(request),
                reason=body.reason,
                confirm=body.confirm,
                context=context(request),
            ),
        )
        return m.RebuildResponse(projection=body.projection, cursor=cursor)

    @app.get("/api/v1/admin/audit", response_model=m.AuditResponse, openapi_extra=needs("admin"))
    async def audit(
        request: Request, limit: int = Query(default=100, ge=1, le=1000)
    ) -> m.AuditResponse:
        entries = await call(request, lambda store, tenant: store.audit_log(tenant, limit))
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
