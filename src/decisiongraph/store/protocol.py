"""The one storage protocol every backend implements.

Callers (the facade, queries, the runtime, the CLI) only see this protocol;
the contract suite in ``tests/contract`` runs the same tests on every backend.
All methods are per tenant: a tenant never sees another tenant's rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from decisiongraph.core.envelope import EventEnvelope, StoredEvent
from decisiongraph.projections.digests import Digests
from decisiongraph.projections.rows import EdgeRow, NodeRow, PrecedentRow, TraceSummaryRow
from decisiongraph.store.chain import ChainProblem


@dataclass(frozen=True, slots=True)
class LogStats:
    event_count: int
    trace_count: int
    last_log_seq: int


@dataclass(frozen=True, slots=True)
class PrecedentHitRow:
    trace_id: str
    workflow: str
    title: str
    outcome: str
    policy_id: str | None
    policy_version: str | None
    finished_at: str | None


class EventStore(Protocol):
    """Append-only log plus its projections, for one database."""

    @property
    def url(self) -> str: ...

    def close(self) -> None: ...

    # -- the log -----------------------------------------------------------
    def append(
        self,
        tenant_id: str,
        envelopes: Sequence[EventEnvelope],
        *,
        project: bool = False,
        catch_up: bool = True,
    ) -> list[StoredEvent]:
        """Validate and append all envelopes in one transaction (all or nothing).

        With ``project`` the projections are advanced in the same transaction
        when they were current; a projection failure never undoes the append.
        When they were not, they are caught up through the appended events
        afterwards (the embedded library's contract), unless ``catch_up`` is
        False: a server leaves that to its workers.
        """
        ...

    def get_trace_events(
        self,
        tenant_id: str,
        trace_id: str,
        since_trace_seq: int | None = None,
        limit: int | None = None,
    ) -> list[StoredEvent]: ...

    def list_events(
        self,
        tenant_id: str,
        since_log_seq: int | None = None,
        until_log_seq: int | None = None,
        event_type: str | None = None,
        trace_id: str | None = None,
        limit: int | None = None,
    ) -> list[StoredEvent]: ...

    def iter_event_batches(
        self,
        tenant_id: str,
        since_log_seq: int | None = None,
        until_log_seq: int | None = None,
        event_type: str | None = None,
        trace_id: str | None = None,
        batch_size: int = 1000,
    ) -> Iterator[list[StoredEvent]]: ...

    def get_last_log_seq(self, tenant_id: str) -> int: ...

    def get_next_trace_seq(self, tenant_id: str, trace_id: str) -> int: ...

    def is_trace_finished(self, tenant_id: str, trace_id: str) -> bool: ...

    def log_stats(self, tenant_id: str) -> LogStats: ...

    def tenants(self) -> list[str]:
        """Tenants with a log head row (cheap: what the workers poll)."""
        ...

    def tenants_in_log(self) -> list[str]:
        """Tenants with a head row or any logged event, distinct and sorted.

        What ``verify`` checks: a tenant whose head row was deleted, or whose
        rows were forged without one, is still found. Scans the log.
        """
        ...

    def verify_chain(self, tenant_id: str) -> ChainProblem | None: ...

    # -- projections -------------------------------------------------------
    def projection_cursors(self, tenant_id: str) -> dict[str, int]: ...

    def projection_cursor(self, tenant_id: str, projection: str | None = None) -> int:
        """One projection's cursor, or the lowest of all when none is named."""
        ...

    def project_pending(
        self,
        tenant_id: str,
        *,
        batch_size: int = 1000,
        until_log_seq: int | None = None,
        projections: Sequence[str] | None = None,
        max_batches: int | None = None,
    ) -> int:
        """Catch projections up from their cursors; returns log events read."""
        ...

    def reset_projections(
        self, tenant_id: str, projections: Sequence[str] | None = None
    ) -> None: ...

    def digests(self, tenant_id: str) -> Digests: ...

    # -- projection reads (queries build on these) -------------------------
    def get_nodes(self, tenant_id: str, node_ids: Sequence[str]) -> list[NodeRow]: ...

    def get_edge(self, tenant_id: str, edge_id: str) -> EdgeRow | None: ...

    def edges_touching(
        self, tenant_id: str, node_ids: Sequence[str], edge_types: Sequence[str] | None
    ) -> list[EdgeRow]: ...

    def edge_page(
        self,
        tenant_id: str,
        node_id: str,
        direction: str,
        after: tuple[int, str] | None,
        limit: int,
    ) -> list[EdgeRow]: ...

    def list_summaries(
        self,
        tenant_id: str,
        *,
        workflow: str | None = None,
        outcome: str | None = None,
        entity_type: str | None = None,
        entity_id: str | None = None,
        since_log_seq: int | None = None,
        after: tuple[int, str] | None = None,
        limit: int = 100,
    ) -> list[TraceSummaryRow]: ...
    def get_summary(self, tenant_id: str, trace_id: str) -> TraceSummaryRow | None: ...

    def search_precedents(
        self,
        tenant_id: str,
        *,
        policy_id: str | None,
        policy_version: str | None,
        entity_type: str | None,
        entity_id: str | None,
        outcome: str | None,
        limit: int,
    ) -> list[PrecedentHitRow]: ...

    def iter_nodes(self, tenant_id: str) -> Iterator[NodeRow]: ...

    def iter_edges(self, tenant_id: str) -> Iterator[EdgeRow]: ...

    def iter_summaries(self, tenant_id: str) -> Iterator[TraceSummaryRow]: ...

    def iter_precedents(self, tenant_id: str) -> Iterator[PrecedentRow]: ...
