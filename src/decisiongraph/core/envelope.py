"""Event envelopes as submitted and as stored (spec 3).

``envelope_from_dict`` is the one door for JSON input (CLI import, HTTP): it
checks the envelope's own structure, so a malformed document is an
``DG_ERR_INVALID_ARGUMENT`` before any payload rule runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from decisiongraph.core.errors import DecisionGraphError, InvalidArgumentError
from decisiongraph.core.fast_init import fast_frozen_init
from decisiongraph.core.refs import ActorRef, SourceRef

DEFAULT_TENANT = "default"


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class EventEnvelope:
    """What a producer submits."""

    event_id: str
    trace_id: str
    trace_seq: int
    event_type: str
    occurred_at: str
    source: SourceRef
    actor: ActorRef
    idempotency_key: str
    payload: dict[str, Any]
    correlation_id: str | None = None
    causation_event_id: str | None = None
    schema_version: int = 1
    tags: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "trace_id": self.trace_id,
            "trace_seq": self.trace_seq,
            "event_type": self.event_type,
            "occurred_at": self.occurred_at,
            "source": self.source.to_dict(),
            "actor": self.actor.to_dict(),
            "idempotency_key": self.idempotency_key,
            "payload": self.payload,
            "correlation_id": self.correlation_id,
            "causation_event_id": self.causation_event_id,
            "schema_version": self.schema_version,
            "tags": list(self.tags),
        }


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An envelope plus the fields the store assigned."""

    tenant_id: str
    log_seq: int
    event_id: str
    trace_id: str
    trace_seq: int
    event_type: str
    occurred_at: str
    recorded_at: str
    source: SourceRef
    actor: ActorRef
    idempotency_key: str
    payload: dict[str, Any]
    payload_hash: str
    correlation_id: str | None = None
    causation_event_id: str | None = None
    schema_version: int = 1
    tags: tuple[str, ...] = ()
    chain_hash: str = ""
    repeated: bool = field(default=False, compare=False)

    def envelope(self) -> EventEnvelope:
        return EventEnvelope(
            event_id=self.event_id,
            trace_id=self.trace_id,
            trace_seq=self.trace_seq,
            event_type=self.event_type,
            occurred_at=self.occurred_at,
            source=self.source,
            actor=self.actor,
            idempotency_key=self.idempotency_key,
            payload=self.payload,
            correlation_id=self.correlation_id,
            causation_event_id=self.causation_event_id,
            schema_version=self.schema_version,
            tags=self.tags,
        )

    def to_dict(self) -> dict[str, Any]:
        """Envelope keys plus the store's; the export/dump format."""
        data = self.envelope().to_dict()
        data.update(
            log_seq=self.log_seq,
            recorded_at=self.recorded_at,
            payload_hash=self.payload_hash,
        )
        return data


_REQUIRED_STR = ("event_id", "trace_id", "event_type", "occurred_at", "idempotency_key")


def _bad(message: str, field_name: str) -> InvalidArgumentError:
    return InvalidArgumentError(message, details={"field": field_name})


def _str_field(data: dict[str, Any], key: str, *, optional: bool, where: str) -> str | None:
    value = data.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise _bad(f"{where}{key} must be a string", f"{where}{key}")
    return value


def _int_field(data: dict[str, Any], key: str, default: int | None) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"{key} must be an integer", key)
    return value


def envelope_from_dict(data: Any) -> EventEnvelope:
    """Build an envelope from decoded JSON, rejecting structural errors."""
    if not isinstance(data, dict):
        raise InvalidArgumentError("An event envelope must be a JSON object")
    built = _well_formed(data)
    return built if built is not None else _checked_envelope(data)


def _well_formed(data: dict[str, Any]) -> EventEnvelope | None:
    """The envelope, when every field is plainly right (the usual case);
    otherwise None, and :func:`_checked_envelope` names the first problem."""
    get: Any = data.get  # values are checked below, before use
    source, actor, tags = get("source"), get("actor"), get("tags")
    if not (isinstance(source, dict) and isinstance(actor, dict) and "payload" in data):
        return None
    in_source: Any = source.get
    in_actor: Any = actor.get
    strings = (
        get("event_id"),
        get("trace_id"),
        get("event_type"),
        get("occurred_at"),
        get("idempotency_key"),
        in_source("producer_id"),
        in_source("system"),
        in_actor("actor_type"),
        in_actor("actor_id"),
    )
    optional = (get("correlation_id"), get("causation_event_id"), in_source("subsystem"))
    trace_seq, schema_version = get("trace_seq"), get("schema_version", 1)
    if not (
        all(isinstance(value, str) for value in strings)
        and all(value is None or isinstance(value, str) for value in optional)
        and type(trace_seq) is int
        and trace_seq >= 0
        and type(schema_version) is int
        and (tags is None or (isinstance(tags, list) and all(isinstance(t, str) for t in tags)))
    ):
        return None
    return EventEnvelope(
        strings[0],
        strings[1],
        trace_seq,
        strings[2],
        strings[3],
        SourceRef(strings[5], strings[6], optional[2]),
        ActorRef(strings[7], strings[8]),
        strings[4],
        data["payload"],
        optional[0],
        optional[1],
        schema_version,
        tuple(tags) if tags else (),
    )


def _checked_envelope(data: dict[str, Any]) -> EventEnvelope:
    strings = {key: _str_field(data, key, optional=False, where="") for key in _REQUIRED_STR}
    trace_seq = _int_field(data, "trace_seq", None)
    if trace_seq < 0:
        raise _bad("trace_seq must be >= 0", "trace_seq")
    schema_version = _int_field(data, "schema_version", 1)
    source = data.get("source")
    if not isinstance(source, dict):
        raise _bad("source must be an object", "source")
    actor = data.get("actor")
    if not isinstance(actor, dict):
        raise _bad("actor must be an object", "actor")
    if "payload" not in data:
        raise _bad("payload is required", "payload")
    payload: Any = data["payload"]
    tags = data.get("tags", [])
    if tags is None:
        tags = []
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise _bad("tags must be a list of strings", "tags")
    return EventEnvelope(
        event_id=strings["event_id"] or "",
        trace_id=strings["trace_id"] or "",
        trace_seq=trace_seq,
        event_type=strings["event_type"] or "",
        occurred_at=strings["occurred_at"] or "",
        source=SourceRef(
            producer_id=_str_field(source, "producer_id", optional=False, where="source.") or "",
            system=_str_field(source, "system", optional=False, where="source.") or "",
            subsystem=_str_field(source, "subsystem", optional=True, where="source."),
        ),
        actor=ActorRef(
            actor_type=_str_field(actor, "actor_type", optional=False, where="actor.") or "",
            actor_id=_str_field(actor, "actor_id", optional=False, where="actor.") or "",
        ),
        idempotency_key=strings["idempotency_key"] or "",
        payload=payload,  # shape is checked by validation, in the spec's order
        correlation_id=_str_field(data, "correlation_id", optional=True, where=""),
        causation_event_id=_str_field(data, "causation_event_id", optional=True, where=""),
        schema_version=schema_version,
        tags=tuple(tags),
    )


def envelopes_from(items: Iterable[Any]) -> list[EventEnvelope]:
    """Envelopes from envelopes or their JSON form, in order.

    The first item that is not a valid envelope raises its error with
    ``details["index"]`` naming its position in the batch.
    """
    out: list[EventEnvelope] = []
    for index, item in enumerate(items):
        if isinstance(item, EventEnvelope):
            out.append(item)
            continue
        try:
            data = dict(item) if isinstance(item, Mapping) and not isinstance(item, dict) else item
            out.append(envelope_from_dict(data))
        except DecisionGraphError as exc:
            raise exc.with_details(index=index) from None
    return out
