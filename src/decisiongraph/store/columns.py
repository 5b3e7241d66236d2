"""Column order of ``dg_event_log`` and the part of it the hash chain covers."""

from __future__ import annotations

EVENT_COLUMNS = (
    "tenant_id",
    "log_seq",
    "event_id",
    "trace_id",
    "trace_seq",
    "event_type",
    "occurred_at",
    "recorded_at",
    "producer_id",
    "system",
    "subsystem",
    "actor_type",
    "actor_id",
    "correlation_id",
    "causation_event_id",
    "idempotency_key",
    "schema_version",
    "payload_json",
    "payload_hash",
    "tags_json",
    "chain_hash",
)

# Every column but the payload itself (covered by payload_hash) and the chain
# hash: editing any stored fact of an event breaks the chain.
CHAIN_FIELDS = tuple(name for name in EVENT_COLUMNS if name not in ("payload_json", "chain_hash"))
