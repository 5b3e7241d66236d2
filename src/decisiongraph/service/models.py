"""Request and response models: the OpenAPI schema is generated from these."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from decisiongraph.core.envelope import StoredEvent

# Positions, counts and ids are 64-bit in every backend; a larger number in a
# request is refused (400) rather than overflowing a driver (500).
INT64_MAX = 2**63 - 1


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL (U+0000)")
    return value


# Text stored as is (reasons, names): PostgreSQL cannot hold NUL in text, so
# it is refused on every backend alike.
Text = Annotated[str, AfterValidator(_no_nul)]


class SourceIn(BaseModel):
    producer_id: str
    system: str
    subsystem: str | None = None


class ActorIn(BaseModel):
    actor_type: str
    actor_id: str


class EnvelopeIn(BaseModel):
    """An event as a producer submits it (spec 3.1)."""

    event_id: str
    trace_id: str
    trace_seq: int = Field(ge=0)
    event_type: str
    occurred_at: str
    source: SourceIn
    actor: ActorIn
    idempotency_key: str
    payload: dict[str, Any]
    correlation_id: str | None = None
    causation_event_id: str | None = None
    schema_version: int = 1
    tags: list[str] = Field(default_factory=list)


class BatchIn(BaseModel):
    events: list[EnvelopeIn] = Field(max_length=1000)


def request_body_schemas() -> dict[str, Any]:
    """JSON Schemas of ``POST /events`` bodies, for the OpenAPI components.

    That route reads its body itself (one envelope or a batch, parsed
    once), so FastAPI does not list these models; their references point
    into the document's components, where this puts them.
    """
    _, top = models_json_schema(
        [(EnvelopeIn, "validation"), (BatchIn, "validation")],
        ref_template="#/components/schemas/{model}",
    )
    return dict(top["$defs"])


class AppendedEvent(BaseModel):
    """What the store assigned; with the submitted envelope, the whole stored event.

    A repeated (idempotent) append answers with the original event's
    ``event_id``, ``trace_seq`` and timestamps, which may differ from the
    envelope just sent.
    """

    tenant_id: str
    log_seq: int
    trace_id: str
    trace_seq: int
    event_id: str
    event_type: str
    occurred_at: str
    recorded_at: str
    payload_hash: str
    chain_hash: str
    repeated: bool


class AppendResponse(BaseModel):
    events: list[AppendedEvent]

    @staticmethod
    def encode(events: list[StoredEvent]) -> bytes:
        """The JSON body of an ``AppendResponse`` of ``events``.

        Byte for byte what the model would write, without building a model
        per event: the ingest route answers up to 1,000 events per request.
        """
        fields = tuple(AppendedEvent.model_fields)
        return orjson.dumps(
            {"events": [{name: getattr(event, name) for name in fields} for event in events]}
        )


class EventOut(BaseModel):
    tenant_id: str
    log_seq: int
    event_id: str
    trace_id: str
    trace_seq: int
    event_type: str
    occurred_at: str
    recorded_at: str
    source: SourceIn
    actor: ActorIn
    idempotency_key: str
    payload: dict[str, Any]
    payload_hash: str
    correlation_id: str | None
    causation_event_id: str | None
    schema_version: int
    tags: list[str]
    chain_hash: str

    @classmethod
    def of(cls, event: StoredEvent) -> EventOut:
        return cls.model_validate(event_json(event))


def event_json(event: StoredEvent) -> dict[str, Any]:
    """A stored event as the API shows it: the export format plus tenant and chain hash."""
    data = event.to_dict()
    data["tenant_id"] = event.tenant_id
    data["chain_hash"] = event.chain_hash
    return data


class TraceEventsResponse(BaseModel):
    events: list[EventOut]


class TraceSummaryOut(BaseModel):
    trace_id: str
    workflow: str
    title: str
    primary_entity_type: str
    primary_entity_id: str
    started_at: str
    finished_at: str | None
    outcome: str | None
    event_count: int
    last_log_seq: int


class NodeOut(BaseModel):
    node_id: str
    node_type: str
    trace_id: str
    log_seq: int
    created_at: str


class EdgeOut(BaseModel):
    edge_id: str
    edge_type: str
    from_node_id: str
    to_node_id: str
    trace_id: str
    log_seq: int
    created_at: str


class SubgraphResponse(BaseModel):
    center: str
    nodes: list[NodeOut]
    edges: list[EdgeOut]
    truncated: bool


class EdgePageResponse(BaseModel):
    edges: list[EdgeOut]
    next_cursor: str | None


class PrecedentOut(BaseModel):
    trace_id: str
    workflow: str
    title: str
    outcome: str
    policy_id: str | None
    policy_version: str | None
    finished_at: str | None


class PrecedentsResponse(BaseModel):
    precedents: list[PrecedentOut]


class ProjectionOut(BaseModel):
    tenant_id: str
    projection: str
    cursor: int
    head: int
    lag_events: int
    lag_seconds: float
    status: str
    owner: str | None
    last_error: str | None
    open_dead_letters: int
    updated_at: str | None
    rebuild_position: int | None


class DigestsOut(BaseModel):
    context_graph: str
    trace_summary: str
    precedent_index: str
    full_projection: str


class HealthOut(BaseModel):
    """Spec 10.6 projection health (counts read the whole log: not for polling)."""

    tenant_id: str
    event_count: int
    trace_count: int
    event_log_last_seq: int
    projected_last_seq: int
    pending_events: int
    is_stale: bool
    digests: DigestsOut | None


class ProjectionsResponse(BaseModel):
    tenant_id: str
    projections: list[ProjectionOut]
    digests: DigestsOut | None


class Status(BaseModel):
    status: str


class TraceListResponse(BaseModel):
    traces: list[TraceSummaryOut]
    next_cursor: str | None


class DeadLetterOut(BaseModel):
    id: int
    tenant_id: str
    projection_name: str
    log_seq: int
    event_id: str
    error_code: str
    message: str
    attempts: int
    first_seen_at: str
    last_seen_at: str
    status: str
    resolved_at: str | None
    resolution: str | None


class DeadLettersResponse(BaseModel):
    dead_letters: list[DeadLetterOut]


class ReasonIn(BaseModel):
    """The body of every admin action. Unknown fields are refused: a typo
    such as ``to_logseq`` must not quietly run a full replay instead. Types
    are strict: ``true`` or ``"3"`` is not a log position."""

    model_config = ConfigDict(extra="forbid", strict=True)

    reason: Text = Field(min_length=1, max_length=2000)


class SkipIn(ReasonIn):
    confirm: Text = Field(description="Type 'skip' to confirm")


class ReplayIn(ReasonIn):
    to_log_seq: int | None = Field(default=None, ge=0, le=INT64_MAX)


class RebuildIn(ReasonIn):
    projection: Text
    confirm: Text = Field(description="Type the projection's name to confirm")


class SkippedEventOut(BaseModel):
    """An event a projection passed over by an operator's audited skip."""

    projection: str
    log_seq: int


class ReplayResponse(BaseModel):
    to_log_seq: int | None
    digests: DigestsOut
    skipped: list[SkippedEventOut] = Field(
        default_factory=list,
        description=(
            "Events the replay passed over because an operator skipped them for "
            "that projection (an audited dead-letter skip at or before the replay "
            "position), as the live projections did; sorted by projection, then "
            "log_seq. Empty when none: the digests are then a plain replay of the log."
        ),
    )


class RebuildResponse(BaseModel):
    projection: str
    cursor: int


class AuditOut(BaseModel):
    id: int
    tenant_id: str
    at: str
    actor: str
    action: str
    target: str
    reason: str
    details: dict[str, Any]


class AuditResponse(BaseModel):
    entries: list[AuditOut]
