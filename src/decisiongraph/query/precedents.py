"""Precedent search: similar finished decisions (spec 10.5)."""

from __future__ import annotations

from dataclasses import dataclass

from decisiongraph.core.errors import InvalidArgumentError
from decisiongraph.projections.rows import PRECEDENT_INDEX, TRACE_SUMMARY
from decisiongraph.query.limits import MAX_QUERY_LIMIT, ensure_current
from decisiongraph.store.protocol import EventStore, PrecedentHitRow

PrecedentHit = PrecedentHitRow


@dataclass(frozen=True, slots=True)
class PrecedentQuery:
    policy_id: str | None = None
    policy_version: str | None = None
    entity_type: str | None = None
    entity_id: str | None = None
    outcome: str | None = None
    limit: int = 100

    def __post_init__(self) -> None:
        if self.policy_version and not self.policy_id:
            raise InvalidArgumentError("policy_version requires policy_id")
        if self.entity_id and not self.entity_type:
            raise InvalidArgumentError("entity_id requires entity_type")
        if not 1 <= self.limit <= MAX_QUERY_LIMIT:
            raise InvalidArgumentError(f"limit must be between 1 and {MAX_QUERY_LIMIT}")


def find_precedents(store: EventStore, tenant_id: str, query: PrecedentQuery) -> list[PrecedentHit]:
    """Finished traces matching the query, most recent first."""
    ensure_current(store, tenant_id, PRECEDENT_INDEX, TRACE_SUMMARY)
    return store.search_precedents(
        tenant_id,
        policy_id=query.policy_id,
        policy_version=query.policy_version,
        entity_type=query.entity_type,
        entity_id=query.entity_id,
        outcome=query.outcome,
        limit=query.limit,
    )
