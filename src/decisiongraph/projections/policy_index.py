"""Policy-evaluation and precedent index rows (spec 8.6, 8.7)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from decisiongraph.core import event_types as et
from decisiongraph.core.errors import SchemaViolationError
from decisiongraph.projections.projected_event import ProjectedEvent
from decisiongraph.projections.rows import PolicyEvalRow, PrecedentRow


def _policy_of(event: ProjectedEvent) -> tuple[str, str]:
    policy: Any = event.payload.get("policy")
    policy_id = policy.get("policy_id") if isinstance(policy, dict) else None
    version = policy.get("policy_version") if isinstance(policy, dict) else None
    if not policy_id or not version:
        raise SchemaViolationError(
            f"{event.event_type} {event.event_id} lacks policy_id/policy_version"
        )
    return policy_id, version


def policy_eval_row(event: ProjectedEvent) -> PolicyEvalRow | None:
    """The index row of a PolicyEvaluated event."""
    if event.event_type != et.POLICY_EVALUATED:
        return None
    policy_id, version = _policy_of(event)
    return PolicyEvalRow(
        index_id=f"{event.trace_id}:{policy_id}:{version}:{event.event_id}",
        trace_id=event.trace_id,
        policy_id=policy_id,
        policy_version=version,
        log_seq=event.log_seq,
        created_at=event.occurred_at,
    )


def precedent_rows(trace_events: Iterable[ProjectedEvent]) -> list[PrecedentRow]:
    """Rows of a finished trace, from its events in trace_seq order.

    Only TraceStarted, PolicyEvaluated and ExceptionRequested events matter,
    so callers may pass just those.
    """
    entity: dict[str, Any] | None = None
    rows: list[PrecedentRow] = []
    for event in trace_events:
        kind = event.event_type
        if kind == et.TRACE_STARTED:
            candidate = event.payload.get("primary_entity")
            if entity is None and isinstance(candidate, dict):
                entity = candidate
        elif kind in (et.POLICY_EVALUATED, et.EXCEPTION_REQUESTED):
            policy_id, version = _policy_of(event)
            exception_id: str | None = None
            if kind == et.EXCEPTION_REQUESTED:
                exception_id = event.payload.get("exception_id")
                if not exception_id:
                    raise SchemaViolationError(
                        f"ExceptionRequested {event.event_id} lacks exception_id"
                    )
            rows.append(
                PrecedentRow(
                    source_event_id=event.event_id,
                    log_seq=event.log_seq,
                    trace_id=event.trace_id,
                    policy_id=policy_id,
                    policy_version=version,
                    exception_id=exception_id,
                    primary_entity_type=entity.get("entity_type") if entity else None,
                    primary_entity_system=entity.get("system") if entity else None,
                    primary_entity_id=entity.get("entity_id") if entity else None,
                )
            )
    return rows


PRECEDENT_SOURCE_TYPES = (et.TRACE_STARTED, et.POLICY_EVALUATED, et.EXCEPTION_REQUESTED)
