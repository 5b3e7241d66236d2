"""``DecisionGraphAPI``: the one interface agent code is written against.

The embedded ``DecisionGraph`` (SQLite or PostgreSQL) and the remote
``Client`` (HTTP) both satisfy it, checked statically (``connect`` returns
either as this type, and tests/sdk/typing_conformance.py is type-checked
by the test suite), so code that takes a ``DecisionGraphAPI`` runs
unchanged on a laptop and against the platform.

Appends return an ``AppendResult``: the ``StoredEvent`` (embedded, or a
remote client), or a ``SpooledEvent`` receipt from a buffered client whose
background sender stores it later. Everything else returns the same types
on both sides. ``AsyncDecisionGraphAPI`` is the same surface with
awaitables, satisfied by ``AsyncClient``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Protocol, Self

from decisiongraph.core.envelope import EventEnvelope, StoredEvent
from decisiongraph.core.helpers import ActorLike, SourceLike
from decisiongraph.core.operator_records import AuditEntry, DeadLetter
from decisiongraph.projections.digests import Digests
from decisiongraph.query.graph import EdgePage, GraphEdgeCursor, GraphFilter, Subgraph
from decisiongraph.query.health import ProjectionHealth
from decisiongraph.query.precedents import PrecedentHit
from decisiongraph.query.traces import TracePage, TraceSummary
from decisiongraph.runtime.health import ProjectionStatus
from decisiongraph.sdk.results import AppendResult, SpooledEvent

__all__ = [
    "AppendResult",
    "AsyncDecisionGraphAPI",
    "AsyncTraceHandle",
    "DecisionGraphAPI",
    "SpooledEvent",
    "TraceHandle",
]


class TraceHandle(Protocol):
    """``with dg.trace(...) as t:`` — each helper returns an ``AppendResult``.

    Set ``outcome`` to finish with something other than ``success``.
    """

    trace_id: str
    outcome: str | None

    def __enter__(self) -> TraceHandle: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def finish(self, outcome: str, summary: str | None = None) -> AppendResult: ...

    def observe_input(
        self, input_id: str, input_source: Any, facts: Sequence[Any], **o: Any
    ) -> AppendResult: ...

    def observe_entity(
        self, entity: Any, role: str, facts: Sequence[Any], **o: Any
    ) -> AppendResult: ...

    def evaluate_policy(
        self, policy: Any, inputs: Sequence[Any], decision: str, **o: Any
    ) -> AppendResult: ...

    def request_exception(
        self, exception_id: str, policy: Any, reason: str, **o: Any
    ) -> AppendResult: ...

    def record_approval(
        self, approval_id: str, subject: Any, approver: Any, decision: str, **o: Any
    ) -> AppendResult: ...

    def cite_precedent(self, cited_trace_id: str, reason: str, **o: Any) -> AppendResult: ...

    def propose_action(
        self,
        action_id: str,
        action_type: str,
        target_entity: Any,
        target_system: str,
        changes: Sequence[Any],
        **o: Any,
    ) -> AppendResult: ...

    def commit_action(self, action_id: str, status: str, **o: Any) -> AppendResult: ...


class AsyncTraceHandle(Protocol):
    """``async with client.trace(...) as t:`` — ``await t.evaluate_policy(...)``."""

    trace_id: str
    outcome: str | None

    async def __aenter__(self) -> AsyncTraceHandle: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def finish(self, outcome: str, summary: str | None = None) -> Awaitable[AppendResult]: ...

    def observe_input(
        self, input_id: str, input_source: Any, facts: Sequence[Any], **o: Any
    ) -> Awaitable[AppendResult]: ...

    def observe_entity(
        self, entity: Any, role: str, facts: Sequence[Any], **o: Any
    ) -> Awaitable[AppendResult]: ...

    def evaluate_policy(
        self, policy: Any, inputs: Sequence[Any], decision: str, **o: Any
    ) -> Awaitable[AppendResult]: ...

    def request_exception(
        self, exception_id: str, policy: Any, reason: str, **o: Any
    ) -> Awaitable[AppendResult]: ...

    def record_approval(
        self, approval_id: str, subject: Any, approver: Any, decision: str, **o: Any
    ) -> Awaitable[AppendResult]: ...

    def cite_precedent(
        self, cited_trace_id: str, reason: str, **o: Any
    ) -> Awaitable[AppendResult]: ...

    def propose_action(
        self,
        action_id: str,
        action_type: str,
        target_entity: Any,
        target_system: str,
        changes: Sequence[Any],
        **o: Any,
    ) -> Awaitable[AppendResult]: ...

    def commit_action(self, action_id: str, status: str, **o: Any) -> Awaitable[AppendResult]: ...


class DecisionGraphAPI(Protocol):
    """Record decisions and read them back, embedded or remote."""

    # -- appends -------------------------------------------------------------
    def append_events(
        self, envelopes: Iterable[EventEnvelope | Mapping[str, Any]]
    ) -> list[StoredEvent]: ...

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
    ) -> AppendResult: ...

    def start_trace(
        self,
        workflow: str,
        title: str,
        primary_entity: Any,
        source: SourceLike,
        actor: ActorLike,
        context: Mapping[str, str] | None = None,
        trace_id: str | None = None,
        **options: Any,
    ) -> str: ...

    def finish_trace(
        self,
        trace_id: str,
        outcome: str,
        source: SourceLike,
        actor: ActorLike,
        summary: str | None = None,
        **options: Any,
    ) -> AppendResult: ...

    def observe_input(
        self,
        trace_id: str,
        input_id: str,
        input_source: Any,
        facts: Sequence[Any],
        source: SourceLike,
        actor: ActorLike,
        **options: Any,
    ) -> AppendResult: ...

    def observe_entity(
        self,
        trace_id: str,
        entity: Any,
        role: str,
        facts: Sequence[Any],
        source: SourceLike,
        actor: ActorLike,
        **options: Any,
    ) -> AppendResult: ...

    def evaluate_policy(
        self,
        trace_id: str,
        policy: Any,
        inputs: Sequence[Any],
        decision: str,
        source: SourceLike,
        actor: ActorLike,
        violations: Sequence[Any] | None = None,
        explanation: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AppendResult: ...

    def request_exception(
        self,
        trace_id: str,
        exception_id: str,
        policy: Any,
        reason: str,
        source: SourceLike,
        actor: ActorLike,
        evidence: Sequence[Any] | None = None,
        **options: Any,
    ) -> AppendResult: ...

    def record_approval(
        self,
        trace_id: str,
        approval_id: str,
        subject: Any,
        approver: Any,
        decision: str,
        source: SourceLike,
        actor: ActorLike,
        reason: str | None = None,
        evidence: Sequence[Any] | None = None,
        **options: Any,
    ) -> AppendResult: ...

    def cite_precedent(
        self,
        trace_id: str,
        cited_trace_id: str,
        reason: str,
        source: SourceLike,
        actor: ActorLike,
        similarity_score: str | None = None,
        **options: Any,
    ) -> AppendResult: ...

    def propose_action(
        self,
        trace_id: str,
        action_id: str,
        action_type: str,
        target_entity: Any,
        target_system: str,
        changes: Sequence[Any],
        source: SourceLike,
        actor: ActorLike,
        **options: Any,
    ) -> AppendResult: ...

    def commit_action(
        self,
        trace_id: str,
        action_id: str,
        status: str,
        source: SourceLike,
        actor: ActorLike,
        external_reference: str | None = None,
        error: str | None = None,
        **options: Any,
    ) -> AppendResult: ...

    def trace(
        self,
        workflow: str,
        title: str,
        primary_entity: Any,
        source: SourceLike,
        actor: ActorLike,
        context: Mapping[str, str] | None = None,
        trace_id: str | None = None,
    ) -> TraceHandle: ...

    # -- reads -----------------------------------------------------------------
    def get_trace_events(
        self, trace_id: str, since_trace_seq: int | None = None, limit: int | None = None
    ) -> list[StoredEvent]: ...

    def get_trace_summary(self, trace_id: str) -> TraceSummary: ...

    def list_traces(
        self,
        workflow: str | None = None,
        outcome: str | None = None,
        entity_type: str | None = None,
        entity_id: str | None = None,
        since: int | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> TracePage: ...

    def iter_traces(
        self,
        workflow: str | None = None,
        outcome: str | None = None,
        entity_type: str | None = None,
        entity_id: str | None = None,
        since: int | None = None,
        page_size: int = 100,
    ) -> Iterator[TraceSummary]: ...

    def get_context_subgraph(
        self,
        node_type: str,
        node_id: str,
        max_depth: int = 1,
        filter_opts: GraphFilter | None = None,
    ) -> Subgraph: ...

    def list_node_edges(
        self,
        node: str,
        direction: str = "both",
        cursor: GraphEdgeCursor | None = None,
        limit: int = 100,
    ) -> EdgePage: ...

    def find_precedents(
        self,
        policy_id: str | None = None,
        policy_version: str | None = None,
        entity_type: str | None = None,
        entity_id: str | None = None,
        outcome: str | None = None,
        limit: int = 100,
    ) -> list[PrecedentHit]: ...

    def get_projection_health(self, include_digests: bool = False) -> ProjectionHealth: ...

    def dead_letters(self, status: str | None = None) -> list[DeadLetter]: ...

    def retry_dead_letter(self, letter_id: int, reason: str) -> DeadLetter: ...

    def skip_dead_letter(self, letter_id: int, reason: str, confirm: str) -> DeadLetter: ...

    def replay(self, reason: str, to_log_seq: int | None = None) -> Digests: ...

    def rebuild_projection(self, projection: str, reason: str, confirm: str) -> int: ...

    def audit_log(self, limit: int = 100) -> list[AuditEntry]: ...

    def projection_statuses(self) -> list[ProjectionStatus]: ...

    def digests(self) -> Digests: ...

    def wait_for(
        self, log_seq: int, timeout: float = 10.0, projections: Sequence[str] = ...
    ) -> bool: ...

    # -- lifetime ----------------------------------------------------------------
    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class AsyncDecisionGraphAPI(Protocol):
    """``DecisionGraphAPI`` for asyncio: the same calls, awaited."""

    def append_events(
        self, envelopes: Iterable[EventEnvelope | Mapping[str, Any]]
    ) -> Awaitable[list[StoredEvent]]: ...

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
    ) -> Awaitable[AppendResult]: ...

    def start_trace(
        self,
        workflow: str,
        title: str,
        primary_entity: Any,
        source: SourceLike,
        actor: ActorLike,
        context: Mapping[str, str] | None = None,
        trace_id: str | None = None,
        **options: Any,
    ) -> Awaitable[str]: ...

    def finish_trace(
        self,
        trace_id: str,
        outcome: str,
        source: SourceLike,
        actor: ActorLike,
        summary: str | None = None,
        **options: Any,
    ) -> Awaitable[AppendResult]: ...

    def observe_input(
        self,
        trace_id: str,
        input_id: str,
        input_source: Any,
        facts: Sequence[Any],
        source: SourceLike,
        actor: ActorLike,
        **options: Any,
    ) -> Awaitable[AppendResult]: ...

    def observe_entity(
        self,
        trace_id: str,
        entity: Any,
        role: str,
        facts: Sequence[Any],
        source: SourceLike,
        actor: ActorLike,
        **options: Any,
    ) -> Awaitable[AppendResult]: ...

    def evaluate_policy(
        self,
        trace_id: str,
        policy: Any,
        inputs: Sequence[Any],
        decision: str,
        source: SourceLike,
        actor: ActorLike,
        violations: Sequence[Any] | None = None,
        explanation: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Awaitable[AppendResult]: ...

    def request_exception(
        self,
        trace_id: str,
        exception_id: str,
        policy: Any,
        reason: str,
        source: SourceLike,
        actor: ActorLike,
        evidence: Sequence[Any] | None = None,
        **options: Any,
    ) -> Awaitable[AppendResult]: ...

    def record_approval(
        self,
        trace_id: str,
        approval_id: str,
        subject: Any,
        approver: Any,
        decision: str,
        source: SourceLike,
        actor: ActorLike,
        reason: str | None = None,
        evidence: Sequence[Any] | None = None,
        **options: Any,
    ) -> Awaitable[AppendResult]: ...

    def cite_precedent(
        self,
        trace_id: str,
        cited_trace_id: str,
        reason: str,
        source: SourceLike,
        actor: ActorLike,
        similarity_score: str | None = None,
        **options: Any,
    ) -> Awaitable[AppendResult]: ...

    def propose_action(
        self,
        trace_id: str,
        action_id: str,
        action_type: str,
        target_entity: Any,
        target_system: str,
        changes: Sequence[Any],
        source: SourceLike,
        actor: ActorLike,
        **options: Any,
    ) -> Awaitable[AppendResult]: ...

    def commit_action(
        self,
        trace_id: str,
        action_id: str,
        status: str,
        source: SourceLike,
        actor: ActorLike,
        external_reference: str | None = None,
        error: str | None = None,
        **options: Any,
    ) -> Awaitable[AppendResult]: ...

    def trace(
        self,
        workflow: str,
        title: str,
        primary_entity: Any,
        source: SourceLike,
        actor: ActorLike,
        context: Mapping[str, str] | None = None,
        trace_id: str | None = None,
    ) -> AsyncTraceHandle: ...

    def get_trace_events(
        self, trace_id: str, since_trace_seq: int | None = None, limit: int | None = None
    ) -> Awaitable[list[StoredEvent]]: ...

    def get_trace_summary(self, trace_id: str) -> Awaitable[TraceSummary]: ...

    def list_traces(
        self,
        workflow: str | None = None,
        outcome: str | None = None,
        entity_type: str | None = None,
        entity_id: str | None = None,
        since: int | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Awaitable[TracePage]: ...

    def iter_traces(
        self,
        workflow: str | None = None,
        outcome: str | None = None,
        entity_type: str | None = None,
        entity_id: str | None = None,
        since: int | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[TraceSummary]: ...

    def get_context_subgraph(
        self,
        node_type: str,
        node_id: str,
        max_depth: int = 1,
        filter_opts: GraphFilter | None = None,
    ) -> Awaitable[Subgraph]: ...

    def list_node_edges(
        self,
        node: str,
        direction: str = "both",
        cursor: GraphEdgeCursor | None = None,
        limit: int = 100,
    ) -> Awaitable[EdgePage]: ...

    def find_precedents(
        self,
        policy_id: str | None = None,
        policy_version: str | None = None,
        entity_type: str | None = None,
        entity_id: str | None = None,
        outcome: str | None = None,
        limit: int = 100,
    ) -> Awaitable[list[PrecedentHit]]: ...

    def get_projection_health(
        self, include_digests: bool = False
    ) -> Awaitable[ProjectionHealth]: ...

    def dead_letters(self, status: str | None = None) -> Awaitable[list[DeadLetter]]: ...

    def retry_dead_letter(self, letter_id: int, reason: str) -> Awaitable[DeadLetter]: ...

    def skip_dead_letter(
        self, letter_id: int, reason: str, confirm: str
    ) -> Awaitable[DeadLetter]: ...

    def replay(self, reason: str, to_log_seq: int | None = None) -> Awaitable[Digests]: ...

    def rebuild_projection(self, projection: str, reason: str, confirm: str) -> Awaitable[int]: ...

    def audit_log(self, limit: int = 100) -> Awaitable[list[AuditEntry]]: ...

    def projection_statuses(self) -> Awaitable[list[ProjectionStatus]]: ...

    def digests(self) -> Awaitable[Digests]: ...

    def wait_for(
        self, log_seq: int, timeout: float = 10.0, projections: Sequence[str] = ...
    ) -> Awaitable[bool]: ...

    def close(self) -> Awaitable[None]: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
