"""``DecisionGraph``: the library facade of spec section 11.

It binds a store to one tenant, fills in what producers usually leave out
(trace_seq, event ids, idempotency keys, timestamps), and keeps projections
current after every append so reads never see their own writes missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from decisiongraph.core.clock import Clock, format_timestamp, system_clock
from decisiongraph.core.envelope import (
    DEFAULT_TENANT,
    EventEnvelope,
    StoredEvent,
    envelopes_from,
)
from decisiongraph.core.errors import InvalidArgumentError
from decisiongraph.core.helpers import ActorLike, EventHelpers, SourceLike, require_text
from decisiongraph.core.operator_records import AuditEntry, DeadLetter
from decisiongraph.projections.digests import Digests
from decisiongraph.projections.rows import PROJECTION_NAMES
from decisiongraph.query import events as event_queries
from decisiongraph.query.graph import (
    EdgePage,
    GraphEdgeCursor,
    GraphFilter,
    Subgraph,
    get_context_subgraph,
    list_node_edges,
)
from decisiongraph.query.health import ProjectionHealth, get_projection_health
from decisiongraph.query.precedents import PrecedentHit, PrecedentQuery, find_precedents
from decisiongraph.query.traces import (
    TraceFilter,
    TracePage,
    TraceSummary,
    get_trace_summary,
    iter_traces,
    list_traces,
)
from decisiongraph.runtime import operations
from decisiongraph.runtime.health import ProjectionStatus, projection_statuses
from decisiongraph.runtime.supervisor import Supervisor, SupervisorConfig
from decisiongraph.runtime.wait import wait_for_position
from decisiongraph.store import EventStore, open_store
from decisiongraph.store.chain import ChainProblem
from decisiongraph.store.postgres import PostgresEventStore, is_postgres_url
from decisiongraph.store.sql_base import SqlEventStore

DEFAULT_PROJECTION_BATCH_SIZE = 1000


class DecisionGraph(EventHelpers[StoredEvent]):
    """Record decisions and investigate them, on SQLite or PostgreSQL."""

    DEFAULT_PROJECTION_BATCH_SIZE = DEFAULT_PROJECTION_BATCH_SIZE

    def __init__(
        self,
        target: str | Path = ":memory:",
        *,
        tenant: str = DEFAULT_TENANT,
        clock: Clock = system_clock,
        project_on_append: bool = True,
        store: EventStore | None = None,
        workers: bool = False,
        worker_config: SupervisorConfig | None = None,
        operator: str = "library",
    ) -> None:
        """Open ``target``; with ``workers`` also run the projection workers.

        Embedded (SQLite) workers share this facade's connection; on
        PostgreSQL each worker thread opens its own. Workers catch up
        whatever is pending at start, without waiting for new traffic.
        ``operator`` names who takes operator actions in the audit log.
        """
        if not tenant:
            raise InvalidArgumentError("tenant must be a non-empty string")
        self._owns_store = store is None  # a shared store is closed by its owner
        self._store = store if store is not None else open_store(target, clock=clock)
        self._tenant = tenant
        self._clock = clock
        self._project_on_append = project_on_append
        self._operator = operator
        self._supervisor: Supervisor | None = None
        if workers:
            self._supervisor = self._start_workers(worker_config)

    def _start_workers(self, config: SupervisorConfig | None) -> Supervisor:
        store = self._runtime_store()
        if is_postgres_url(store.url):
            url = store.url
            return Supervisor(lambda: PostgresEventStore(url), config).start()
        return Supervisor(lambda: store, config, shared_store=True).start()

    def _runtime_store(self) -> SqlEventStore:
        if not isinstance(self._store, SqlEventStore):
            raise InvalidArgumentError("This store does not support the projection runtime")
        return self._store

    @property
    def supervisor(self) -> Supervisor | None:
        """The in-process projection workers, when started with ``workers=True``."""
        return self._supervisor

    @classmethod
    def from_postgres(cls, conninfo: str, **kwargs: Any) -> DecisionGraph:
        return cls(conninfo, **kwargs)

    @property
    def store(self) -> EventStore:
        return self._store

    @property
    def tenant(self) -> str:
        return self._tenant

    def for_tenant(self, tenant: str) -> DecisionGraph:
        """A facade on the same store bound to another tenant."""
        return DecisionGraph(
            tenant=tenant,
            clock=self._clock,
            project_on_append=self._project_on_append,
            store=self._store,
            operator=self._operator,
        )

    def close(self) -> None:
        if self._supervisor is not None:
            self._supervisor.stop()
            self._supervisor = None
        if self._owns_store:
            self._store.close()

    def __enter__(self) -> DecisionGraph:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- appends -----------------------------------------------------------
    def append_events(
        self, envelopes: Iterable[EventEnvelope | Mapping[str, Any]]
    ) -> list[StoredEvent]:
        """Append fully specified envelopes in one transaction, all or nothing."""
        items = envelopes_from(envelopes)
        return self._store.append(self._tenant, items, project=self._project_on_append)

    def append_event(
        self,
        trace_id: str,
        event_type: str,
        payload: dict[str, Any],
        source: SourceLike,
        actor: ActorLike,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
        causation_event_id: str | None = None,
        schema_version: int = 1,
        tags: Sequence[str] | None = None,
        occurred_at: str | None = None,
    ) -> StoredEvent:
        """Append one event at the trace's next position (spec 11.2)."""
        trace_seq = self._store.get_next_trace_seq(self._tenant, trace_id)
        envelope = self.build_envelope(
            trace_id,
            trace_seq,
            event_type,
            payload,
            source,
            actor,
            occurred_at or format_timestamp(self._clock()),
            idempotency_key,
            correlation_id,
            causation_event_id,
            schema_version,
            tags,
        )
        return self.append_events([envelope])[0]

    # -- reads ---------------------------------------------------------------
    def get_trace_events(
        self, trace_id: str, since_trace_seq: int | None = None, limit: int | None = None
    ) -> list[StoredEvent]:
        require_text(trace_id, "trace_id")  # refused as the remote client does
        return event_queries.get_trace_events(
            self._store, self._tenant, trace_id, since_trace_seq, limit
        )

    def list_events(
        self,
        since_log_seq: int | None = None,
        until_log_seq: int | None = None,
        event_type: str | None = None,
        limit: int | None = None,
    ) -> list[StoredEvent]:
        return event_queries.list_events(
            self._store, self._tenant, since_log_seq, until_log_seq, event_type, limit
        )

    def get_trace_summary(self, trace_id: str) -> TraceSummary:
        require_text(trace_id, "trace_id")  # refused as the remote client does
        return get_trace_summary(self._store, self._tenant, trace_id)

    def list_traces(
        self,
        workflow: str | None = None,
        outcome: str | None = None,
        entity_type: str | None = None,
        entity_id: str | None = None,
        since: int | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> TracePage:
        """One page of trace summaries, most recently changed first."""
        filters = TraceFilter(workflow, outcome, entity_type, entity_id, since)
        return list_traces(self._store, self._tenant, filters, cursor, limit)

    def iter_traces(
        self,
        workflow: str | None = None,
        outcome: str | None = None,
        entity_type: str | None = None,
        entity_id: str | None = None,
        since: int | None = None,
        page_size: int = 100,
    ) -> Iterator[TraceSummary]:
        """Every matching trace, following the pages."""
        filters = TraceFilter(workflow, outcome, entity_type, entity_id, since)
        return iter_traces(self._store, self._tenant, filters, page_size)

    def get_context_subgraph(
        self,
        node_type: str,
        node_id: str,
        max_depth: int = 1,
        filter_opts: GraphFilter | None = None,
    ) -> Subgraph:
        require_text(node_type, "node_type")
        require_text(node_id, "node_id")
        return get_context_subgraph(
            self._store, self._tenant, node_type, node_id, max_depth, filter_opts
        )

    def list_node_edges(
        self,
        node: str,
        direction: str = "both",
        cursor: GraphEdgeCursor | None = None,
        limit: int = 100,
    ) -> EdgePage:
        require_text(node, "node")
        return list_node_edges(self._store, self._tenant, node, direction, cursor, limit)

    def find_precedents(
        self,
        policy_id: str | None = None,
        policy_version: str | None = None,
        entity_type: str | None = None,
        entity_id: str | None = None,
        outcome: str | None = None,
        limit: int = 100,
    ) -> list[PrecedentHit]:
        query = PrecedentQuery(policy_id, policy_version, entity_type, entity_id, outcome, limit)
        return find_precedents(self._store, self._tenant, query)

    def get_projection_health(self, include_digests: bool = False) -> ProjectionHealth:
        return get_projection_health(self._store, self._tenant, include_digests)

    def is_trace_finished(self, trace_id: str) -> bool:
        return self._store.is_trace_finished(self._tenant, trace_id)

    # -- maintenance ---------------------------------------------------------
    def sync_projections(self, batch_size: int | None = None) -> int:
        """Catch projections up from their cursor; returns events processed."""
        size = DEFAULT_PROJECTION_BATCH_SIZE if batch_size is None else batch_size
        if size <= 0:
            raise InvalidArgumentError("batch_size must be positive")
        return self._store.project_pending(self._tenant, batch_size=size)

    def replay_projections(self, batch_size: int | None = None) -> None:
        """Rebuild every projection of the tenant from the log."""
        size = DEFAULT_PROJECTION_BATCH_SIZE if batch_size is None else batch_size
        if size <= 0:
            raise InvalidArgumentError("batch_size must be positive")
        self._store.reset_projections(self._tenant)
        self._store.project_pending(self._tenant, batch_size=size)

    def digests(self) -> Digests:
        """Digests of the projections as they stand."""
        return self._store.digests(self._tenant)

    def wait_for(
        self,
        log_seq: int,
        timeout: float = 10.0,
        projections: Sequence[str] = PROJECTION_NAMES,
    ) -> bool:
        """Block until the projections have applied ``log_seq`` (read your writes).

        Returns False if ``timeout`` seconds pass first.
        """
        return wait_for_position(
            self._store, self._tenant, log_seq, timeout=timeout, projections=projections
        )

    def projection_statuses(self) -> list[ProjectionStatus]:
        """Cursor, lag, status, owner and last error of each projection."""
        return projection_statuses(self._runtime_store(), self._tenant, clock=self._clock)

    # -- operator actions (audited; the API's admin endpoints) ------------------
    def dead_letters(self, status: str | None = None) -> list[DeadLetter]:
        """Events a projection could not apply (``status``: open, retry, skipped, resolved)."""
        return self._runtime_store().dead_letters(self._tenant, status=status)

    def retry_dead_letter(self, letter_id: int, reason: str) -> DeadLetter:
        """Let the projection try the event again, after a fix; audited."""
        return operations.retry_dead_letter(
            self._runtime_store(), self._tenant, letter_id, actor=self._operator, reason=reason
        )

    def skip_dead_letter(self, letter_id: int, reason: str, confirm: str) -> DeadLetter:
        """Pass over the event for good; ``confirm`` must be ``"skip"``; audited."""
        return operations.skip_dead_letter(
            self._runtime_store(),
            self._tenant,
            letter_id,
            actor=self._operator,
            reason=reason,
            confirm=confirm,
        )

    def replay(self, reason: str, to_log_seq: int | None = None) -> Digests:
        """Digests as of ``to_log_seq`` (default: now) from a fresh replay beside
        the live projections, which it leaves alone, honouring audited skips as
        they do; audited. The skips themselves are listed by ``decisiongraph
        replay`` and the API (``runtime.operations.replay`` returns them)."""
        return operations.replay(
            self._runtime_store(),
            self._tenant,
            actor=self._operator,
            reason=reason,
            to_log_seq=to_log_seq,
        ).digests

    def rebuild_projection(self, projection: str, reason: str, confirm: str) -> int:
        """Rebuild one projection online (reads go on); ``confirm`` repeats its name."""
        return operations.rebuild(
            self._runtime_store(),
            self._tenant,
            projection,
            actor=self._operator,
            reason=reason,
            confirm=confirm,
        )

    def audit_log(self, limit: int = 100) -> list[AuditEntry]:
        """The tenant's operator actions, newest first.

        ``limit`` is checked here as the API checks it (1..1000), so a bad
        value is refused the same way embedded and remote.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise InvalidArgumentError(
                f"limit must be between 1 and 1000, got {limit!r}", details={"field": "limit"}
            )
        return self._runtime_store().audit_log(self._tenant, limit)

    def verify(self) -> ChainProblem | None:
        """Recompute the tenant's hash chain; the first problem, or None."""
        return self._store.verify_chain(self._tenant)
