"""Small builders for contract tests: valid envelopes of every type."""

from __future__ import annotations

from typing import Any

from decisiongraph.core.envelope import EventEnvelope
from decisiongraph.core.refs import ActorRef, SourceRef

SOURCE = SourceRef("contract_producer", "tests")
ACTOR = ActorRef("agent", "contract_bot")

PAYLOADS: dict[str, dict[str, Any]] = {
    "TraceStarted": {
        "workflow": "deal_approval",
        "title": "Discount",
        "primary_entity": {"entity_type": "account", "entity_id": "acme", "system": "crm"},
    },
    "InputObserved": {
        "input_id": "deal_size",
        "source": {"system": "crm", "object_type": "deal", "object_id": "d1"},
        "facts": [],
    },
    "EntityObserved": {
        "entity": {"entity_type": "account", "entity_id": "acme"},
        "role": "primary",
        "facts": [],
    },
    "PolicyEvaluated": {
        "policy": {"policy_id": "cap", "policy_version": "1"},
        "inputs": [],
        "decision": "require_exception",
    },
    "ExceptionRequested": {
        "exception_id": "ex1",
        "policy": {"policy_id": "cap", "policy_version": "1"},
        "reason": "strategic",
    },
    "ApprovalRecorded": {
        "approval_id": "ap1",
        "subject": {"subject_type": "exception", "subject_id": "ex1"},
        "approver": {"actor_type": "person", "actor_id": "vp"},
        "decision": "approved",
    },
    "PrecedentCited": {"cited_trace_id": "older", "reason": "same customer"},
    "ActionProposed": {
        "action_id": "act1",
        "action_type": "apply_discount",
        "target_entity": {"entity_type": "deal", "entity_id": "d1"},
        "target_system": "crm",
        "changes": [],
    },
    "ActionCommitted": {"action_id": "act1", "status": "success"},
    "TraceFinished": {"outcome": "success"},
}
ORDER = list(PAYLOADS)


def envelope(
    trace_id: str,
    trace_seq: int,
    event_type: str,
    *,
    payload: dict[str, Any] | None = None,
    key: str | None = None,
    event_id: str | None = None,
    **overrides: Any,
) -> EventEnvelope:
    fields: dict[str, Any] = {
        "event_id": event_id or f"{trace_id}-{trace_seq}",
        "trace_id": trace_id,
        "trace_seq": trace_seq,
        "event_type": event_type,
        "occurred_at": f"2026-01-01T00:00:{trace_seq:02d}Z",
        "source": SOURCE,
        "actor": ACTOR,
        "idempotency_key": key or f"{event_type}:{trace_id}:{trace_seq}",
        "payload": payload if payload is not None else dict(PAYLOADS[event_type]),
    }
    fields.update(overrides)
    return EventEnvelope(**fields)


def full_trace(trace_id: str, *, finish: bool = True) -> list[EventEnvelope]:
    """One event of each type in a sensible order (TraceFinished last)."""
    types = ORDER if finish else ORDER[:-1]
    return [envelope(trace_id, seq, kind) for seq, kind in enumerate(types)]
