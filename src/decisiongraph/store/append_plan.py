"""The append algorithm of spec section 7, as a pure plan.

A backend takes its tenant's write lock, looks up what the plan needs (events
already stored under the batch's idempotency keys, the last event of each
touched trace, the log head) and hands it here. The plan decides every
outcome and builds the rows, so both backends share one implementation of
idempotency, sequencing, the finished-trace lock and the hash chain.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from decisiongraph.core.envelope import StoredEvent
from decisiongraph.core.errors import (
    ConflictError,
    DecisionGraphError,
    EventSequenceInvalidError,
    IdempotencyConflictError,
)
from decisiongraph.core.event_types import TRACE_FINISHED, TRACE_STARTED
from decisiongraph.core.validation import ValidatedEvent
from decisiongraph.store.chain import link_hash

IdemKey = tuple[str, str]
TraceHead = tuple[int, str]  # (max trace_seq, event_type at it)


Row = tuple[object, ...]


@dataclass(slots=True)
class AppendPlan:
    results: list[StoredEvent]
    rows: list[Row]
    last_log_seq: int
    last_chain_hash: str


def idem_key(item: ValidatedEvent) -> IdemKey:
    return (item.envelope.source.producer_id, item.envelope.idempotency_key)


def reuse_or_conflict(stored: StoredEvent, item: ValidatedEvent) -> StoredEvent:
    """Spec 7.3: return the stored event, or raise when the retry differs."""
    if stored.payload_hash != item.payload_hash:
        raise IdempotencyConflictError(
            "Idempotency key reused with a different payload",
            details={"mismatched_fields": ["payload"], "event_id": stored.event_id},
        )
    env = item.envelope
    mismatched = [
        name
        for name, same in (
            ("trace_id", stored.trace_id == env.trace_id),
            ("event_type", stored.event_type == env.event_type),
            ("source", stored.source == env.source),
            ("actor", stored.actor == env.actor),
            ("correlation_id", stored.correlation_id == env.correlation_id),
            ("causation_event_id", stored.causation_event_id == env.causation_event_id),
            ("schema_version", stored.schema_version == env.schema_version),
            ("tags", tuple(stored.tags) == tuple(env.tags)),
        )
        if not same
    ]
    if mismatched:
        raise IdempotencyConflictError(
            "Idempotency key reused with different metadata: " + ", ".join(mismatched),
            details={"mismatched_fields": mismatched, "event_id": stored.event_id},
        )
    return stored if stored.repeated else replace(stored, repeated=True)


def check_sequence(item: ValidatedEvent, head: TraceHead | None) -> None:
    """Spec 7.2 steps 3 and 4 against the trace's current last event."""
    env = item.envelope
    if head is not None and head[1] == TRACE_FINISHED:
        raise ConflictError(
            f"Trace {env.trace_id} is finished; no further events are accepted",
            details={"trace_id": env.trace_id},
        )
    expected = 0 if head is None else head[0] + 1
    if env.trace_seq != expected:
        raise EventSequenceInvalidError(
            f"Expected trace_seq {expected}, got {env.trace_seq}",
            details={"trace_id": env.trace_id, "expected": expected, "got": env.trace_seq},
        )
    if env.event_type == TRACE_STARTED and env.trace_seq != 0:
        raise EventSequenceInvalidError("TraceStarted must have trace_seq 0")
    if env.event_type != TRACE_STARTED and env.trace_seq == 0:
        raise EventSequenceInvalidError(f"First event must be TraceStarted, got {env.event_type}")


def plan_append(
    tenant_id: str,
    items: Sequence[ValidatedEvent],
    existing: Mapping[IdemKey, StoredEvent],
    trace_heads: Mapping[str, TraceHead],
    log_head: tuple[int, str],
    recorded_at: str,
    emit: Callable[[Row], None] | None = None,
) -> AppendPlan:
    """Decide each event's fate in order; any error aborts the whole batch.

    Errors carry ``details["index"]``, the position of the offending event.
    ``emit`` receives each new row as soon as it is built (a backend may
    start writing before the batch is planned; an error then aborts it).
    """
    known: dict[IdemKey, StoredEvent] = dict(existing)
    heads: dict[str, TraceHead] = dict(trace_heads)
    last_seq, chain = log_head
    results: list[StoredEvent] = []
    rows: list[Row] = []
    for index, item in enumerate(items):
        try:
            key = idem_key(item)
            stored = known.get(key)
            if stored is not None:
                results.append(reuse_or_conflict(stored, item))
                continue
            env = item.envelope
            check_sequence(item, heads.get(env.trace_id))
        except DecisionGraphError as exc:
            if len(items) > 1:
                exc.message = f"event {index}: {exc.message}"
            raise exc.with_details(index=index) from None
        last_seq += 1
        source, actor = env.source, env.actor
        row: list[object] = [
            tenant_id,
            last_seq,
            env.event_id,
            env.trace_id,
            env.trace_seq,
            env.event_type,
            env.occurred_at,
            recorded_at,
            source.producer_id,
            source.system,
            source.subsystem,
            actor.actor_type,
            actor.actor_id,
            env.correlation_id,
            env.causation_event_id,
            env.idempotency_key,
            env.schema_version,
            item.payload_json,
            item.payload_hash,
            item.tags_json,
        ]
        # The chain covers every column but the payload (via its hash).
        chain = link_hash(chain, row[:17] + row[18:])
        row.append(chain)
        built = tuple(row)
        rows.append(built)
        if emit is not None:
            emit(built)
        stored = StoredEvent(  # positional (field order), a third cheaper per event
            tenant_id,
            last_seq,
            env.event_id,
            env.trace_id,
            env.trace_seq,
            env.event_type,
            env.occurred_at,
            recorded_at,
            source,
            actor,
            env.idempotency_key,
            env.payload,
            item.payload_hash,
            env.correlation_id,
            env.causation_event_id,
            env.schema_version,
            env.tags,
            chain,
        )
        known[key] = stored
        heads[env.trace_id] = (env.trace_seq, env.event_type)
        results.append(stored)
    return AppendPlan(results, rows, last_seq, chain)
