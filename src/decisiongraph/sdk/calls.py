"""Each read of the API once: its path, its query parameters, how to decode it.

The sync and the async client send the same ``Call`` through their own
transport, so the two can never drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from decisiongraph.core.envelope import StoredEvent
from decisiongraph.core.errors import InvalidArgumentError
from decisiongraph.core.helpers import require_text
from decisiongraph.core.operator_records import AuditEntry, DeadLetter
from decisiongraph.projections.digests import Digests
from decisiongraph.query.graph import EdgePage, GraphEdgeCursor, GraphFilter, Subgraph
from decisiongraph.query.health import ProjectionHealth
from decisiongraph.query.precedents import PrecedentHit
from decisiongraph.query.traces import TracePage, TraceSummary
from decisiongraph.runtime.health import ProjectionStatus
from decisiongraph.sdk import results

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    path: str
    params: Mapping[str, Any]
    decode: Callable[[Any], T]
    method: str = "GET"
    body: bytes | None = None
    #: False for the audited operator actions: running one twice is two
    #: actions (two audit entries, two replays), so such a call is retried
    #: only when the request provably never reached the server.
    idempotent: bool = True


def _quoted(segment: str) -> str:
    return quote(segment, safe="") if segment.strip(".") else "%2E" * len(segment)


def trace_events(
    trace_id: str, since_trace_seq: int | None, limit: int | None
) -> Call[list[StoredEvent]]:
    require_text(trace_id, "trace_id")
    return Call(
        f"/api/v1/traces/{_quoted(trace_id)}/events",
        {"since_trace_seq": since_trace_seq, "limit": limit},
        lambda body: [results.stored_event(e) for e in body["events"]],
    )


def trace_summary(trace_id: str) -> Call[TraceSummary]:
    require_text(trace_id, "trace_id")
    return Call(f"/api/v1/traces/{_quoted(trace_id)}", {}, results.trace_summary)


def list_traces(
    workflow: str | None,
    outcome: str | None,
    entity_type: str | None,
    entity_id: str | None,
    since: int | None,
    cursor: str | None,
    limit: int,
) -> Call[TracePage]:
    return Call(
        "/api/v1/traces",
        {
            "workflow": workflow,
            "outcome": outcome,
            "entity_type": entity_type,
            "entity_id": entity_id,
            "since": since,
            "cursor": cursor,
            "limit": limit,
        },
        lambda body: TracePage(
            [results.trace_summary(t) for t in body["traces"]], body.get("next_cursor")
        ),
    )


def subgraph(
    node_type: str, node_id: str, max_depth: int, filter_opts: GraphFilter | None
) -> Call[Subgraph]:
    require_text(node_type, "node_type")
    require_text(node_id, "node_id")
    # The library's rule: an explicit max_depth wins over the filter's.
    params: dict[str, Any] = {"node_type": node_type, "node_id": node_id}
    if filter_opts is None:
        params["max_depth"] = max_depth
    else:
        params.update(
            max_depth=filter_opts.max_depth if max_depth == 1 else max_depth,
            edge_types=list(filter_opts.edge_types) if filter_opts.edge_types else None,
            node_types=list(filter_opts.node_types) if filter_opts.node_types else None,
            max_nodes=filter_opts.max_nodes,
            max_edges=filter_opts.max_edges,
        )
    return Call("/api/v1/graph/subgraph", params, results.subgraph)


def node_edges(
    node: str, direction: str, cursor: GraphEdgeCursor | None, limit: int
) -> Call[EdgePage]:
    require_text(node, "node")
    after = None
    if cursor is not None:
        if cursor.direction != direction:
            raise InvalidArgumentError("cursor direction does not match the request")
        if cursor.log_seq is None:
            raise InvalidArgumentError(
                "A remote edge cursor needs its log_seq: pass EdgePage.next_cursor"
            )
        after = cursor.as_text()
    return Call(
        "/api/v1/graph/edges",
        {"node": node, "direction": direction, "cursor": after, "limit": limit},
        results.edge_page,
    )


def precedents(
    policy_id: str | None,
    policy_version: str | None,
    entity_type: str | None,
    entity_id: str | None,
    outcome: str | None,
    limit: int,
) -> Call[list[PrecedentHit]]:
    return Call(
        "/api/v1/precedents",
        {
            "policy_id": policy_id,
            "policy_version": policy_version,
            "entity_type": entity_type,
            "entity_id": entity_id,
            "outcome": outcome,
            "limit": limit,
        },
        lambda body: [results.precedent_hit(h) for h in body["precedents"]],
    )


def projection_health(include_digests: bool) -> Call[ProjectionHealth]:
    return Call(
        "/api/v1/projections/health",
        {"include_digests": "true" if include_digests else None},
        results.projection_health,
    )


def projection_statuses() -> Call[list[ProjectionStatus]]:
    return Call(
        "/api/v1/projections",
        {},
        lambda body: [results.projection_status(p) for p in body["projections"]],
    )


def _digests(body: Any) -> Digests:
    found = results.digests(body["digests"])
    assert found is not None  # asked for with include_digests
    return found


def digests() -> Call[Digests]:
    return Call("/api/v1/projections", {"include_digests": "true"}, _digests)


# -- operator calls (the admin scope) ------------------------------------------------
def _json(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document).encode("utf-8")


def dead_letters(status: str | None) -> Call[list[DeadLetter]]:
    return Call(
        "/api/v1/projections/dead-letters",
        {"status": status},
        lambda body: [results.dead_letter(d) for d in body["dead_letters"]],
    )


def resolve_dead_letter(
    letter_id: int, action: str, reason: str, confirm: str | None
) -> Call[DeadLetter]:
    document: dict[str, Any] = {"reason": reason}
    if confirm is not None:
        document["confirm"] = confirm
    return Call(
        f"/api/v1/admin/dead-letters/{int(letter_id)}/{action}",
        {},
        results.dead_letter,
        "POST",
        _json(document),
        idempotent=False,
    )


def replay(reason: str, to_log_seq: int | None) -> Call[Digests]:
    return Call(
        "/api/v1/admin/replay",
        {},
        _digests,
        "POST",
        _json({"reason": reason, "to_log_seq": to_log_seq}),
        idempotent=False,
    )


def rebuild(projection: str, reason: str, confirm: str) -> Call[int]:
    return Call(
        "/api/v1/admin/rebuild",
        {},
        lambda body: int(body["cursor"]),
        "POST",
        _json({"projection": projection, "reason": reason, "confirm": confirm}),
        idempotent=False,
    )


def audit_log(limit: int) -> Call[list[AuditEntry]]:
    return Call(
        "/api/v1/admin/audit",
        {"limit": limit},
        lambda body: [results.audit_entry(e) for e in body["entries"]],
    )


def query_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Drop unset parameters (the server's defaults apply)."""
    return {key: value for key, value in params.items() if value is not None}
