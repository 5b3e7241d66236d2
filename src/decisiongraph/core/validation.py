"""Append-time validation in the exact order of spec section 5.

The result, :class:`ValidatedEvent`, carries everything the store needs that
is a pure function of the envelope (hash, serialized columns), so backends do
no JSON work of their own and cannot disagree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from decisiongraph.core.canonical_json import compiled, json_p_plain
from decisiongraph.core.envelope import EventEnvelope
from decisiongraph.core.errors import InvalidArgumentError, SchemaViolationError
from decisiongraph.core.event_types import check_payload_shape
from decisiongraph.core.fast_init import fast_frozen_init
from decisiongraph.core.hashing import sha256_text
from decisiongraph.core.pii import check_no_secrets, find_forbidden
from decisiongraph.core.refs import ActorRef, SourceRef

MAX_IDEMPOTENCY_KEY_BYTES = 200
#: Deepest nesting of objects and arrays a payload may have (an addition to
#: the spec): every reader, the HTTP API's encoder among them, must be able
#: to give back what was stored, and the encoders stop near 255 levels.
MAX_PAYLOAD_DEPTH = 100
#: Longest identifier, in UTF-8 bytes (an addition to the spec): ids are
#: keys of unique indexes, and PostgreSQL refuses an index entry over 2,704
#: bytes (after compression, so that whether a long id failed depended on
#: its letters) where SQLite takes any length. With every part of a derived
#: key (an edge id joins four) bounded so, every backend stores the same.
MAX_ID_BYTES = 512

#: The payload strings each event type turns into projection keys (node,
#: edge and index ids; spec 8.4 to 8.7), as paths into the payload.
_PAYLOAD_IDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "TraceStarted": (
        ("primary_entity", "entity_type"),
        ("primary_entity", "entity_id"),
        ("primary_entity", "system"),
    ),
    "InputObserved": (("input_id",),),
    "EntityObserved": (("entity", "entity_type"), ("entity", "entity_id")),
    "PolicyEvaluated": (("policy", "policy_id"), ("policy", "policy_version")),
    "ExceptionRequested": (("exception_id",),),
    "ApprovalRecorded": (
        ("approver", "actor_type"),
        ("approver", "actor_id"),
        ("subject", "subject_id"),
    ),
    "PrecedentCited": (("cited_trace_id",),),
    "ActionProposed": (
        ("action_id",),
        ("target_entity", "entity_type"),
        ("target_entity", "entity_id"),
    ),
    "ActionCommitted": (("action_id",),),
}

# Step 2 must accept NaN/Infinity (they fail later, at step 5), so it uses an
# encoder that allows them; for float-free payloads its output *is* JSON-P.
_SAFETY = compiled(json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":")))
_SCOPE = compiled(json.JSONEncoder(ensure_ascii=False, separators=(",", ":")))


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class ValidatedEvent:
    """An envelope that passed validation, with its derived columns."""

    envelope: EventEnvelope
    payload_json: str
    payload_hash: str
    tags_json: str


_INT64_MAX = 2**63 - 1


def check_tenant_id(tenant_id: str) -> None:
    """Tenants are names: non-empty, printable, at most 200 UTF-8 bytes."""
    if not isinstance(tenant_id, str) or not tenant_id.strip():
        raise InvalidArgumentError("tenant_id must be a non-empty string")
    if "\x00" in tenant_id or len(tenant_id.encode("utf-8", "replace")) > 200:
        raise InvalidArgumentError("tenant_id must be at most 200 bytes without NUL")


def _bad_field(name: str, problem: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"{name} {problem}", details={"field": name})


def check_envelope_fields(envelope: EventEnvelope) -> str:
    """Envelope strings must be storable alike on every backend.

    PostgreSQL cannot store NUL in text and no backend can store a lone
    surrogate, so both are refused up front, on every backend, instead of
    surfacing as a storage error on one of them (an addition to the spec).
    Returns the strings newline-joined, for the secret guard's quick check.
    """
    if not isinstance(envelope.source, SourceRef):
        raise _bad_field("source", "must be a SourceRef")
    if not isinstance(envelope.actor, ActorRef):
        raise _bad_field("actor", "must be an ActorRef")
    if not isinstance(envelope.tags, list | tuple):
        # A bare string would otherwise be stored as one tag per character.
        raise _bad_field("tags", "must be a list of strings")
    for name, number in (
        ("trace_seq", envelope.trace_seq),
        ("schema_version", envelope.schema_version),
    ):
        if (
            isinstance(number, bool)
            or not isinstance(number, int)
            or not -_INT64_MAX <= number <= _INT64_MAX
        ):
            raise _bad_field(name, "must be a 64-bit integer")
    source, actor = envelope.source, envelope.actor
    values = [
        envelope.event_id,
        envelope.trace_id,
        envelope.event_type,
        envelope.occurred_at,
        source.producer_id,
        source.system,
        actor.actor_type,
        actor.actor_id,
        envelope.idempotency_key,
        *envelope.tags,
    ]
    values.extend(
        value
        for value in (source.subsystem, envelope.correlation_id, envelope.causation_event_id)
        if value is not None
    )
    size = 0
    try:
        joined = "\n".join(values)
        size = len(joined.encode("utf-8"))
        clean = "\x00" not in joined
    except (TypeError, UnicodeEncodeError):
        clean = False
    if not clean:
        _name_bad_field(envelope)
    if size > MAX_ID_BYTES:  # all of them together: a long one is rare
        _check_id_lengths(envelope)
    return joined


def _envelope_strings(envelope: EventEnvelope) -> dict[str, object]:
    """The envelope's string fields by the names errors give them (tags and
    the idempotency key, checked on their own, apart)."""
    source, actor = envelope.source, envelope.actor
    return {
        "event_id": envelope.event_id,
        "trace_id": envelope.trace_id,
        "event_type": envelope.event_type,
        "occurred_at": envelope.occurred_at,
        "source.producer_id": source.producer_id,
        "source.system": source.system,
        "source.subsystem": source.subsystem,
        "actor.actor_type": actor.actor_type,
        "actor.actor_id": actor.actor_id,
        "correlation_id": envelope.correlation_id,
        "causation_event_id": envelope.causation_event_id,
    }


# Envelope strings that are no identifier: one of ten type names, and a
# timestamp stored verbatim (spec 3.4) that no index holds.
_NOT_IDS = frozenset({"event_type", "occurred_at"})


def _check_id_lengths(envelope: EventEnvelope) -> None:
    for name, value in _envelope_strings(envelope).items():
        if name not in _NOT_IDS:
            _check_id_length(name, value)


def _check_id_length(name: str, value: object) -> None:
    if isinstance(value, str) and len(value.encode("utf-8")) > MAX_ID_BYTES:
        raise _bad_field(name, f"is longer than {MAX_ID_BYTES} bytes (an identifier)")


def _check_payload_ids(event_type: str, payload: dict[str, Any], text: str) -> None:
    """Refuse a payload identifier (see ``_PAYLOAD_IDS``) over
    ``MAX_ID_BYTES``; a payload whose whole text is shorter holds none."""
    short = len(text) <= MAX_ID_BYTES
    if short and (text.isascii() or len(text) <= MAX_ID_BYTES // 4):  # 4 bytes a character
        return
    for path in _PAYLOAD_IDS.get(event_type, ()):
        value: Any = payload
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        _check_id_length("payload." + ".".join(path), value)


def _name_bad_field(envelope: EventEnvelope) -> None:
    """Slow path of :func:`check_envelope_fields`: raise naming the field."""
    fields = _envelope_strings(envelope)
    for index, tag in enumerate(envelope.tags):
        fields[f"tags[{index}]"] = tag
    for name, value in fields.items():
        if value is None and name in _NULLABLE:
            continue
        if not isinstance(value, str):
            raise _bad_field(name, "must be a string")
        if "\x00" in value:
            raise _bad_field(name, "must not contain NUL")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise _bad_field(name, "is not valid Unicode") from exc


_NULLABLE = frozenset({"source.subsystem", "correlation_id", "causation_event_id"})


def check_idempotency_key(key: str) -> None:
    """Step 1: non-empty, no NUL, at most 200 UTF-8 bytes."""
    if not isinstance(key, str) or key == "":
        raise InvalidArgumentError("idempotency_key must be a non-empty string")
    if "\x00" in key:
        raise InvalidArgumentError("idempotency_key must not contain NUL")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidArgumentError("idempotency_key is not valid Unicode") from exc
    if size > MAX_IDEMPOTENCY_KEY_BYTES:
        raise InvalidArgumentError(
            f"idempotency_key is {size} bytes; at most {MAX_IDEMPOTENCY_KEY_BYTES} allowed"
        )


def _scan(value: Any, path: str) -> str | None:
    """Reject non-string keys; return the path of the first float, if any."""
    first_float: str | None = None
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, dict):
            for key, inner in item.items():
                if not isinstance(key, str):
                    raise InvalidArgumentError(
                        f"Payload keys must be strings (found {type(key).__name__} at '{where}')"
                    )
                if isinstance(inner, dict | list | tuple | float):
                    stack.append((inner, f"{where}.{key}"))
        elif isinstance(item, list | tuple):
            for index, inner in enumerate(item):
                if isinstance(inner, dict | list | tuple | float):
                    stack.append((inner, f"{where}[{index}]"))
        elif isinstance(item, float) and first_float is None:
            first_float = where
    return first_float


class _FloatSeen(Exception):
    """Raised by the decoder hooks: the encoded payload holds a float."""


def _refuse_float(_text: str) -> Any:
    raise _FloatSeen


_FLOAT_GUARD = json.JSONDecoder(parse_float=_refuse_float, parse_constant=_refuse_float)


def _first_float(payload: Any, text: str) -> str | None:
    """Path of the first float in the payload (None if none); rejects non-str keys.

    Fast path: decoding the encoded payload calls the float hooks exactly for
    the float (and NaN/Infinity) tokens outside strings, and gives back an
    equal payload exactly when every key was a string and no tuple was
    involved. Anything else takes the precise walk, which names the path.
    """
    try:
        if _FLOAT_GUARD.raw_decode(text)[0] == payload:
            return None
    except _FloatSeen:
        pass
    return _scan(payload, "$.payload")


def _contains_nul(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


def _check_depth(payload: Any, text: str) -> None:
    """Refuse a payload nested deeper than ``MAX_PAYLOAD_DEPTH``.

    Deeper nesting needs at least that many brackets in the text, a count
    done in C; only then is the payload walked to measure it exactly.
    """
    if text.count("{") + text.count("[") <= MAX_PAYLOAD_DEPTH:
        return
    stack: list[tuple[Any, int]] = [(payload, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_PAYLOAD_DEPTH:
            raise InvalidArgumentError(
                f"Payload is nested deeper than {MAX_PAYLOAD_DEPTH} levels",
                details={"max_depth": MAX_PAYLOAD_DEPTH},
            )
        children = value.values() if isinstance(value, dict) else value
        stack.extend(
            (child, depth + 1) for child in children if isinstance(child, dict | list | tuple)
        )


def _json_safe_text(payload: Any) -> str:
    """Step 2: the payload must encode as JSON and as UTF-8."""
    try:
        text = _SAFETY(payload)
        text.encode("utf-8")
    except (TypeError, ValueError, RecursionError, UnicodeEncodeError) as exc:
        raise InvalidArgumentError(f"Payload is not JSON-serializable: {exc}") from exc
    _refuse_nul(payload, text)
    return text


def _refuse_nul(payload: Any, text: str) -> None:
    # PostgreSQL text cannot hold NUL and projections copy payload strings
    # into text columns, so NUL is refused on every backend alike.
    if "\\u0000" in text and _contains_nul(payload):
        raise InvalidArgumentError("Payload strings must not contain NUL (U+0000)")


def validate_envelope(envelope: EventEnvelope) -> ValidatedEvent:
    """Run steps 1-5 of spec section 5; first failure wins.

    The idempotency key goes first as the spec orders; the storability check
    of the other envelope strings follows it.
    """
    check_idempotency_key(envelope.idempotency_key)
    joined = check_envelope_fields(envelope)
    payload = envelope.payload
    # Plain data (no floats, tuples or odd types) is encoded by the fast
    # path, which needs no float search; the rest takes the checked path.
    plain = json_p_plain(payload)
    if plain is not None:
        text = plain
        _refuse_nul(payload, text)
        first_float = None
    else:
        text = _json_safe_text(payload)  # first: it also rejects circular structures
        first_float = _first_float(payload, text)
    _check_depth(payload, text)
    check_payload_shape(envelope.event_type, payload)
    _check_payload_ids(envelope.event_type, payload, text)
    # Every scanned string (and a few more), newline-joined: no pattern holds
    # a newline or a JSON-escaped character, so a miss here is a miss
    # everywhere and the precise walk is needed only after a hit.
    if find_forbidden(text + "\n" + joined) is not None:
        check_no_secrets(
            {
                "payload": payload,
                "tags": list(envelope.tags),
                "actor": envelope.actor.to_dict(),
                "source": envelope.source.to_dict(),
                "correlation_id": envelope.correlation_id,
                "causation_event_id": envelope.causation_event_id,
                "idempotency_key": envelope.idempotency_key,
            }
        )
    if first_float is not None:
        raise SchemaViolationError(
            f"Floats are not allowed in payloads (found at '{first_float}')",
            details={"path": first_float},
        )
    tags = list(envelope.tags)
    tags_text = (json_p_plain(tags) or _SCOPE(tags)) if tags else "[]"
    return ValidatedEvent(
        envelope=envelope,
        payload_json=text,
        payload_hash=sha256_text(text),
        tags_json=tags_text,
    )
