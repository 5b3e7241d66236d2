"""The server's JSON answers as the library's own result types.

A remote read returns the very classes the embedded ``DecisionGraph``
returns (``StoredEvent``, ``TraceSummary``, ``Subgraph`` ...), so code
written against one runs unchanged against the other. The SDK imports these
plain data classes from the query layer (they are its vocabulary), never
any storage or server code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from decisiongraph.core.envelope import EventEnvelope, StoredEvent
from decisiongraph.core.operator_records import AuditEntry, DeadLetter
from decisiongraph.core.refs import ActorRef, SourceRef
from decisiongraph.projections.digests import Digests
from decisiongraph.projections.rows import EdgeRow, NodeRow
from decisiongraph.query.graph import EdgePage, GraphEdgeCursor, Subgraph
from decisiongraph.query.health import ProjectionHealth
from decisiongraph.query.precedents import PrecedentHit
from decisiongraph.query.traces import TraceSummary
from decisiongraph.runtime.health import ProjectionStatus


class SpooledEvent(NamedTuple):
    """A buffered append's receipt: the event is queued for delivery, not yet stored.

    It carries what the client decided (the event id, the trace position and
    the idempotency key); the store assigns ``log_seq`` and the hashes when
    the background sender delivers it. ``Client.flush()`` waits for that.
    (A named tuple: the cheapest immutable record to make on the agent's
    thread.)
    """

    event_id: str
    trace_id: str
    trace_seq: int
    event_type: str
    idempotency_key: str
    occurred_at: str


#: What an append returns: the stored event, or a buffered client's receipt.
AppendResult = StoredEvent | SpooledEvent


def source_from_json(data: Mapping[str, Any]) -> SourceRef:
    return SourceRef(data["producer_id"], data["system"], data.get("subsystem"))


def actor_from_json(data: Mapping[str, Any]) -> ActorRef:
    return ActorRef(data["actor_type"], data["actor_id"])


def stored_event(data: Mapping[str, Any]) -> StoredEvent:
    """An event from ``/traces/{id}/events`` or the stream."""
    return StoredEvent(
        tenant_id=data["tenant_id"],
        log_seq=int(data["log_seq"]),
        event_id=data["event_id"],
        trace_id=data["trace_id"],
        trace_seq=int(data["trace_seq"]),
        event_type=data["event_type"],
        occurred_at=data["occurred_at"],
        recorded_at=data["recorded_at"],
        source=source_from_json(data["source"]),
        actor=actor_from_json(data["actor"]),
        idempotency_key=data["idempotency_key"],
        payload=data["payload"],
        payload_hash=data["payload_hash"],
        correlation_id=data.get("correlation_id"),
        causation_event_id=data.get("causation_event_id"),
        schema_version=int(data.get("schema_version", 1)),
        tags=tuple(data.get("tags") or ()),
        chain_hash=data.get("chain_hash", ""),
    )


def appended_event(envelope: EventEnvelope, receipt: Mapping[str, Any]) -> StoredEvent:
    """The stored event: the envelope sent plus what the store assigned.

    A repeated append is answered with the original event's id, position and
    timestamps; everything else is equal to what was sent (the server
    refuses a reuse whose payload or metadata differ).
    """
    return StoredEvent(
        tenant_id=receipt["tenant_id"],
        log_seq=int(receipt["log_seq"]),
        event_id=receipt["event_id"],
        trace_id=envelope.trace_id,
        trace_seq=int(receipt["trace_seq"]),
        event_type=envelope.event_type,
        occurred_at=receipt["occurred_at"],
        recorded_at=receipt["recorded_at"],
        source=envelope.source,
        actor=envelope.actor,
        idempotency_key=envelope.idempotency_key,
        payload=envelope.payload,
        payload_hash=receipt["payload_hash"],
        correlation_id=envelope.correlation_id,
        causation_event_id=envelope.causation_event_id,
        schema_version=envelope.schema_version,
        tags=envelope.tags,
        chain_hash=receipt["chain_hash"],
        repeated=bool(receipt.get("repeated", False)),
    )


def trace_summary(data: Mapping[str, Any]) -> TraceSummary:
    return TraceSummary(
        trace_id=data["trace_id"],
        workflow=data["workflow"],
        title=data["title"],
        primary_entity_type=data["primary_entity_type"],
        primary_entity_id=data["primary_entity_id"],
        started_at=data["started_at"],
        finished_at=data.get("finished_at"),
        outcome=data.get("outcome"),
        event_count=int(data["event_count"]),
        last_log_seq=int(data["last_log_seq"]),
    )


def node_row(data: Mapping[str, Any]) -> NodeRow:
    return NodeRow(
        data["node_id"],
        data["node_type"],
        data["trace_id"],
        int(data["log_seq"]),
        data["created_at"],
    )


def edge_row(data: Mapping[str, Any]) -> EdgeRow:
    return EdgeRow(
        data["edge_id"],
        data["edge_type"],
        data["from_node_id"],
        data["to_node_id"],
        data["trace_id"],
        int(data["log_seq"]),
        data["created_at"],
    )


def subgraph(data: Mapping[str, Any]) -> Subgraph:
    return Subgraph(
        center=data["center"],
        nodes=[node_row(n) for n in data["nodes"]],
        edges=[edge_row(e) for e in data["edges"]],
        truncated=bool(data["truncated"]),
    )


def edge_page(data: Mapping[str, Any]) -> EdgePage:
    text = data.get("next_cursor")
    next_cursor = GraphEdgeCursor.from_text(str(text)) if text else None
    return EdgePage([edge_row(e) for e in data["edges"]], next_cursor)


def precedent_hit(data: Mapping[str, Any]) -> PrecedentHit:
    return PrecedentHit(
        trace_id=data["trace_id"],
        workflow=data["workflow"],
        title=data["title"],
        outcome=data["outcome"],
        policy_id=data.get("policy_id"),
        policy_version=data.get("policy_version"),
        finished_at=data.get("finished_at"),
    )


def digests(data: Mapping[str, Any] | None) -> Digests | None:
    if data is None:
        return None
    return Digests(
        context_graph=data["context_graph"],
        trace_summary=data["trace_summary"],
        precedent_index=data["precedent_index"],
        full_projection=data["full_projection"],
    )


def projection_health(data: Mapping[str, Any]) -> ProjectionHealth:
    return ProjectionHealth(
        event_count=int(data["event_count"]),
        trace_count=int(data["trace_count"]),
        event_log_last_seq=int(data["event_log_last_seq"]),
        projected_last_seq=int(data["projected_last_seq"]),
        pending_events=int(data["pending_events"]),
        is_stale=bool(data["is_stale"]),
        digests=digests(data.get("digests")),
    )


def projection_status(data: Mapping[str, Any]) -> ProjectionStatus:
    return ProjectionStatus(
        tenant_id=data["tenant_id"],
        projection=data["projection"],
        cursor=int(data["cursor"]),
        head=int(data["head"]),
        lag_events=int(data["lag_events"]),
        lag_seconds=float(data["lag_seconds"]),
        status=data["status"],
        owner=data.get("owner"),
        last_error=data.get("last_error"),
        open_dead_letters=int(data["open_dead_letters"]),
        updated_at=data.get("updated_at"),
        rebuild_position=data.get("rebuild_position"),
    )


def dead_letter(data: Mapping[str, Any]) -> DeadLetter:
    return DeadLetter(
        id=int(data["id"]),
        tenant_id=data["tenant_id"],
        projection_name=data["projection_name"],
        log_seq=int(data["log_seq"]),
        event_id=data["event_id"],
        error_code=data["error_code"],
        message=data["message"],
        attempts=int(data["attempts"]),
        first_seen_at=data["first_seen_at"],
        last_seen_at=data["last_seen_at"],
        status=data["status"],
        resolved_at=data.get("resolved_at"),
        resolution=data.get("resolution"),
    )


def audit_entry(data: Mapping[str, Any]) -> AuditEntry:
    return AuditEntry(
        id=int(data["id"]),
        tenant_id=data["tenant_id"],
        at=data["at"],
        actor=data["actor"],
        action=data["action"],
        target=data["target"],
        reason=data["reason"],
        details=dict(data["details"]),
    )
