"""Operator endpoints: dead letters, replay, online rebuild, the audit log.

Every admin action needs the ``admin`` scope and a reason; destructive ones
also a typed confirmation; each is written to the audit log.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Query, Request

from decisiongraph.core.errors import InvalidArgumentError
from decisiongraph.projections.rows import PROJECTION_NAMES
from decisiongraph.runtime.rebuild import rebuild_online, replay_digests
from decisiongraph.service import models as m

Caller = Callable[[Request, str, Callable[[Any, str], Any]], Awaitable[Any]]


def encode_cursor(last_log_seq: int, trace_id: str) -> str:
    raw = json.dumps([last_log_seq, trace_id]).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii")


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        seq, trace_id = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
    except (ValueError, TypeError, UnicodeError) as exc:
        raise InvalidArgumentError("Malformed cursor") from exc
    if not isinstance(seq, int) or not isinstance(trace_id, str):
        raise InvalidArgumentError("Malformed cursor")
    return seq, trace_id


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
        after = decode_cursor(cursor) if cursor else None

        def work(store: Any, tenant: str) -> list[Any]:
            rows: list[Any] = store.list_summaries(
                tenant,
                workflow=workflow,
                outcome=outcome,
                entity_type=entity_type,
                entity_id=entity_id,
                since_log_seq=since,
                after=after,
                limit=limit + 1,
            )
            return rows

        rows = await call(request, "events:read", work)
        page = rows[:limit]
        next_cursor = None
        if len(rows) > limit:
            next_cursor = encode_cursor(page[-1].last_log_seq, page[-1].trace_id)
        traces = [
            m.TraceSummaryOut(
                trace_id=r.trace_id,
                workflow=r.workflow,
                title=r.title,
                primary_entity_type=r.primary_entity_type or "",
                primary_entity_id=r.primary_entity_id or "",
                started_at=r.started_at,
                finished_at=r.finished_at,
                outcome=r.outcome,
                event_count=r.event_count,
                last_log_seq=r.last_log_seq,
            )
            for r in page
        ]
        return m.TraceListResponse(traces=traces, next_cursor=next_cursor)

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
            lambda store, tenant: store.resolve_dead_letter(
                tenant, letter_id, action="retry", actor=actor(request), reason=body.reason
            ),
        )
        return m.DeadLetterOut.model_validate(letter.as_dict())

    @app.post("/api/v1/admin/dead-letters/{letter_id}/skip", response_model=m.DeadLetterOut)
    async def skip(request: Request, letter_id: int, body: m.SkipIn) -> m.DeadLetterOut:
        if body.confirm != "skip":
            raise InvalidArgumentError("Skipping an event needs confirm='skip'")
        letter = await call(
            request,
            "admin",
            lambda store, tenant: store.resolve_dead_letter(
                tenant, letter_id, action="skip", actor=actor(request), reason=body.reason
            ),
        )
        return m.DeadLetterOut.model_validate(letter.as_dict())

    @app.post("/api/v1/admin/replay", response_model=m.ReplayResponse)
    async def replay(request: Request, body: m.ReplayIn) -> m.ReplayResponse:
        def work(store: Any, tenant: str) -> dict[str, str]:
            store.record_audit(
                tenant,
                actor=actor(request),
                action="projection.replay",
                target=f"log_seq<={body.to_log_seq}" if body.to_log_seq is not None else "head",
                reason=body.reason,
            )
            digests: dict[str, str] = replay_digests(store, tenant, body.to_log_seq).as_dict()
            return digests

        digests = await call(request, "admin", work)
        return m.ReplayResponse(to_log_seq=body.to_log_seq, digests=m.DigestsOut(**digests))

    @app.post("/api/v1/admin/rebuild", response_model=m.RebuildResponse)
    async def rebuild(request: Request, body: m.RebuildIn) -> m.RebuildResponse:
        if body.projection not in PROJECTION_NAMES:
            raise InvalidArgumentError(
                f"Unknown projection '{body.projection}'", details={"known": list(PROJECTION_NAMES)}
            )
        if body.confirm != body.projection:
            raise InvalidArgumentError("Rebuilding needs confirm set to the projection's name")

        def work(store: Any, tenant: str) -> int:
            store.record_audit(
                tenant,
                actor=actor(request),
                action="projection.rebuild",
                target=body.projection,
                reason=body.reason,
            )
            cursor: int = rebuild_online(store, tenant, body.projection, owner=actor(request))
            return cursor

        cursor = await call(request, "admin", work)
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
