"""Context-graph emission for one event (spec 8.4), as a pure function.

Nodes and edges are *insert-or-ignore* (first writer wins), so the emitted
list is simply every node write in order: the event's own nodes, then each
edge's two endpoints as placeholders. A placeholder for a node that exists
already is a no-op, which is exactly the spec's "create if missing".
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any

from decisiongraph.core import event_types as et
from decisiongraph.projections.projected_event import ProjectedEvent
from decisiongraph.projections.rows import EdgeRow, NodeRow


def _get(obj: Any, key: str, default: Any) -> Any:
    return obj.get(key, default) if isinstance(obj, dict) else default


def _entity_node(obj: Any) -> str:
    return f"entity:{_get(obj, 'entity_type', 'unknown')}:{_get(obj, 'entity_id', 'unknown')}"


def _placeholder(node_id: str, edge: EdgeRow) -> NodeRow:
    node_type, sep, rest = node_id.partition(":")
    if not sep:
        node_type = "unknown"
    trace_id = rest if node_type == "trace" and sep else edge.trace_id
    return NodeRow(node_id, node_type, trace_id, edge.log_seq, edge.created_at)


def graph_writes(
    event: ProjectedEvent, known: Container[str] = ()
) -> tuple[list[NodeRow], list[EdgeRow]]:
    """Node writes (own nodes, then edge endpoints) and edges for one event.

    Endpoints in ``known`` (nodes a caller has already written) and the
    event's own nodes get no placeholder: first writer wins, so those
    placeholders would be no-ops anyway.
    """
    payload = event.payload
    trace_node = f"trace:{event.trace_id}"
    own: list[tuple[str, str]] = []  # (node_id, node_type)
    links: list[tuple[str, str, str]] = []  # (edge_type, from, to)
    kind = event.event_type
    if kind == et.TRACE_STARTED:
        own.append((trace_node, "trace"))
        own.append((f"actor:{event.actor.actor_type}:{event.actor.actor_id}", "actor"))
        if "primary_entity" in payload:
            entity = _entity_node(payload["primary_entity"])
            own.append((entity, "entity"))
            links.append(("trace_involves_entity", trace_node, entity))
    elif kind == et.INPUT_OBSERVED:
        node = f"input:{payload.get('input_id', event.event_id)}"
        own.append((node, "input"))
        links.append(("trace_observed_input", trace_node, node))
    elif kind == et.ENTITY_OBSERVED:
        node = _entity_node(payload.get("entity"))
        own.append((node, "entity"))
        links.append(("trace_involves_entity", trace_node, node))
    elif kind == et.POLICY_EVALUATED:
        policy = payload.get("policy")
        if isinstance(policy, dict) and "policy_id" in policy:
            policy_id = policy["policy_id"]
        else:
            policy_id = f"unknown:{event.event_id}"
        version = _get(policy, "policy_version", "")
        node = f"policy:{policy_id}:{version}" if version else f"policy:{policy_id}"
        own.append((node, "policy"))
        links.append(("trace_evaluated_policy", trace_node, node))
    elif kind == et.EXCEPTION_REQUESTED:
        node = f"exception:{payload.get('exception_id', event.event_id)}"
        own.append((node, "exception"))
        links.append(("trace_requested_exception", trace_node, node))
    elif kind == et.APPROVAL_RECORDED:
        approver = payload.get("approver")
        approver_type = _get(approver, "actor_type", "person")
        node = f"actor:{approver_type}:{_get(approver, 'actor_id', 'unknown')}"
        own.append((node, "actor"))
        subject = payload.get("subject")
        subject_id = _get(subject, "subject_id", "")
        if _get(subject, "subject_type", None) == "exception" and subject_id:
            links.append(("exception_approved_by", f"exception:{subject_id}", node))
    elif kind == et.PRECEDENT_CITED:
        cited = payload.get("cited_trace_id", "")
        if cited:
            links.append(("trace_cited_precedent", trace_node, f"trace:{cited}"))
    elif kind == et.ACTION_PROPOSED:
        node = f"action:{payload.get('action_id', event.event_id)}"
        own.append((node, "action"))
        links.append(("trace_proposed_action", trace_node, node))
        target = payload.get("target_entity")
        if isinstance(target, dict) and target:
            links.append(("action_targets_entity", node, _entity_node(target)))
    elif kind == et.ACTION_COMMITTED:
        action_id = payload.get("action_id", "")
        if action_id:
            links.append(("trace_committed_action", trace_node, f"action:{action_id}"))

    nodes = [
        NodeRow(node_id, node_type, event.trace_id, event.log_seq, event.occurred_at)
        for node_id, node_type in own
    ]
    edges: list[EdgeRow] = []
    written = {node_id for node_id, _ in own}
    for edge_type, source, target in links:
        edge = EdgeRow(
            f"{edge_type}:{source}:{target}:{event.event_id}",
            edge_type,
            source,
            target,
            event.trace_id,
            event.log_seq,
            event.occurred_at,
        )
        for end in (source, target):
            if end not in written and end not in known:
                nodes.append(_placeholder(end, edge))
                written.add(end)
        edges.append(edge)
    return nodes, edges
