"""Value objects used inside envelopes and payloads (spec 2).

Each serializes field by field, so optional fields are present as ``null``:
that shape is part of the payload hash for events built by the typed helpers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from decisiongraph.core.errors import InvalidArgumentError
from decisiongraph.core.fast_init import fast_frozen_init


def _nested(
    record: object, name: str, expected: type[Any], *, optional: bool = False
) -> dict[str, Any] | None:
    """A record field holding another record, serialized.

    Records are plain data with no checks on construction; a wrong type
    (``Change("p", Value(...), None)`` in the old argument order, say)
    would otherwise surface as an ``AttributeError`` from deep inside a
    helper, so it is refused here, naming the field, with the stable code.
    """
    value = getattr(record, name)
    if value is None and optional:
        return None
    if not isinstance(value, expected):
        owner = type(record).__name__
        raise InvalidArgumentError(
            f"{owner}.{name} must be a {expected.__name__}"
            f"{' or None' if optional else ''}, not {type(value).__name__}",
            details={"field": f"{owner}.{name}"},
        )
    serialized: dict[str, Any] = value.to_dict()
    return serialized


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class ActorRef:
    actor_type: str
    actor_id: str

    def to_dict(self) -> dict[str, Any]:
        return {"actor_type": self.actor_type, "actor_id": self.actor_id}


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class SourceRef:
    producer_id: str
    system: str
    subsystem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"producer_id": self.producer_id, "system": self.system, "subsystem": self.subsystem}


@dataclass(frozen=True, slots=True)
class EntityRef:
    entity_type: str
    entity_id: str
    system: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"entity_type": self.entity_type, "entity_id": self.entity_id, "system": self.system}


@dataclass(frozen=True, slots=True)
class Value:
    type: str
    value: str

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "value": self.value}


@dataclass(frozen=True, slots=True)
class Fact:
    key: str
    value: Value
    as_of: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "value": _nested(self, "value", Value), "as_of": self.as_of}


@dataclass(frozen=True, slots=True)
class SourceObjectRef:
    system: str
    object_type: str
    object_id: str
    locator: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "object_type": self.object_type,
            "object_id": self.object_id,
            "locator": self.locator,
        }


@dataclass(frozen=True, slots=True)
class EvidenceRef:
    source: SourceObjectRef
    locator: str
    excerpt_redacted: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": _nested(self, "source", SourceObjectRef),
            "locator": self.locator,
            "excerpt_redacted": self.excerpt_redacted,
        }


@dataclass(frozen=True, slots=True)
class PolicyRef:
    policy_id: str
    policy_version: str

    def to_dict(self) -> dict[str, Any]:
        return {"policy_id": self.policy_id, "policy_version": self.policy_version}


@dataclass(frozen=True, slots=True)
class Violation:
    code: str
    message: str
    details: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


@dataclass(frozen=True, slots=True)
class Change:
    """Spec 2: ``Change(path, old_value, new_value)``, in that order and with
    no defaults; ``old_value`` is None when the path had no value before."""

    path: str
    old_value: Value | None
    new_value: Value

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "old_value": _nested(self, "old_value", Value, optional=True),
            "new_value": _nested(self, "new_value", Value),
        }


@dataclass(frozen=True, slots=True)
class ApprovalSubject:
    subject_type: str
    subject_id: str
    extra: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**self.extra, "subject_type": self.subject_type, "subject_id": self.subject_id}


def as_dict(value: Any) -> Any:
    """Serialize a value object (or pass plain JSON through unchanged)."""
    to_dict = getattr(value, "to_dict", None)
    if to_dict is not None:
        return to_dict()
    if isinstance(value, list | tuple):
        return [as_dict(item) for item in value]
    return value
