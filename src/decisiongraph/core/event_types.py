"""The ten event types and the payload rules the runtime enforces (spec 4)."""

from __future__ import annotations

from typing import Any, Final

from decisiongraph.core.errors import SchemaViolationError

TRACE_STARTED: Final = "TraceStarted"
INPUT_OBSERVED: Final = "InputObserved"
ENTITY_OBSERVED: Final = "EntityObserved"
POLICY_EVALUATED: Final = "PolicyEvaluated"
EXCEPTION_REQUESTED: Final = "ExceptionRequested"
APPROVAL_RECORDED: Final = "ApprovalRecorded"
PRECEDENT_CITED: Final = "PrecedentCited"
ACTION_PROPOSED: Final = "ActionProposed"
ACTION_COMMITTED: Final = "ActionCommitted"
TRACE_FINISHED: Final = "TraceFinished"

ALL_EVENT_TYPES: Final = (
    TRACE_STARTED,
    INPUT_OBSERVED,
    ENTITY_OBSERVED,
    POLICY_EVALUATED,
    EXCEPTION_REQUESTED,
    APPROVAL_RECORDED,
    PRECEDENT_CITED,
    ACTION_PROPOSED,
    ACTION_COMMITTED,
    TRACE_FINISHED,
)

# A rule is (key, kind, nested string keys). Kinds: "str" non-empty string,
# "obj" object whose nested keys must be non-empty strings, "list" JSON array.
_Rule = tuple[str, str, tuple[str, ...]]

PAYLOAD_RULES: Final[dict[str, tuple[_Rule, ...]]] = {
    TRACE_STARTED: (
        ("workflow", "str", ()),
        ("title", "str", ()),
        ("primary_entity", "obj", ("entity_type", "entity_id")),
    ),
    INPUT_OBSERVED: (
        ("input_id", "str", ()),
        ("source", "obj", ("system", "object_type", "object_id")),
        ("facts", "list", ()),
    ),
    ENTITY_OBSERVED: (
        ("entity", "obj", ("entity_type", "entity_id")),
        ("role", "str", ()),
        ("facts", "list", ()),
    ),
    POLICY_EVALUATED: (
        ("policy", "obj", ("policy_id", "policy_version")),
        ("inputs", "list", ()),
        ("decision", "str", ()),
    ),
    EXCEPTION_REQUESTED: (
        ("exception_id", "str", ()),
        ("policy", "obj", ("policy_id", "policy_version")),
        ("reason", "str", ()),
    ),
    APPROVAL_RECORDED: (
        ("approval_id", "str", ()),
        ("subject", "obj", ("subject_type", "subject_id")),
        ("approver", "obj", ("actor_type", "actor_id")),
        ("decision", "str", ()),
    ),
    PRECEDENT_CITED: (
        ("cited_trace_id", "str", ()),
        ("reason", "str", ()),
    ),
    ACTION_PROPOSED: (
        ("action_id", "str", ()),
        ("action_type", "str", ()),
        ("target_entity", "obj", ("entity_type", "entity_id")),
        ("target_system", "str", ()),
        ("changes", "list", ()),
    ),
    ACTION_COMMITTED: (
        ("action_id", "str", ()),
        ("status", "str", ()),
    ),
    TRACE_FINISHED: (("outcome", "str", ()),),
}


def _is_required_str(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def check_payload_shape(event_type: str, payload: Any) -> None:
    """Spec 4: unknown type, then non-object payload, then keys in table order."""
    rules = PAYLOAD_RULES.get(event_type)
    if rules is None:
        raise SchemaViolationError(f"Unknown event_type '{event_type}'")
    if not isinstance(payload, dict):
        raise SchemaViolationError(f"Payload of {event_type} must be an object")
    for key, kind, nested in rules:
        value = payload.get(key)
        if kind == "str":
            if not _is_required_str(value):
                raise SchemaViolationError(
                    f"{event_type} payload requires non-empty string '{key}'",
                    details={"field": key},
                )
        elif kind == "list":
            if not isinstance(value, list):
                raise SchemaViolationError(
                    f"{event_type} payload requires list '{key}'", details={"field": key}
                )
        else:
            if not isinstance(value, dict):
                raise SchemaViolationError(
                    f"{event_type} payload requires object '{key}'", details={"field": key}
                )
            for inner in nested:
                if not _is_required_str(value.get(inner)):
                    raise SchemaViolationError(
                        f"{event_type} payload requires non-empty string '{key}.{inner}'",
                        details={"field": f"{key}.{inner}"},
                    )
