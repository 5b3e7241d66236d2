"""Context-graph investigations: bounded subgraphs and edge pages (10.3, 10.4)."""

from __future__ import annotations

from dataclasses import dataclass, field

from decisiongraph.core.errors import InvalidArgumentError
from decisiongraph.projections.rows import CONTEXT_GRAPH, EdgeRow, NodeRow
from decisiongraph.query.limits import MAX_GRAPH_DEPTH, ensure_current
from decisiongraph.store.protocol import EventStore

DIRECTIONS = ("outgoing", "incoming", "both")


@dataclass(frozen=True, slots=True)
class GraphFilter:
    edge_types: tuple[str, ...] | None = None
    node_types: tuple[str, ...] | None = None
    max_depth: int = 1
    max_nodes: int = 100
    max_edges: int = 500

    def __post_init__(self) -> None:
        if not 0 <= self.max_depth <= MAX_GRAPH_DEPTH:
            raise InvalidArgumentError(f"max_depth must be between 0 and {MAX_GRAPH_DEPTH}")
        if self.max_nodes <= 0 or self.max_edges <= 0:
            raise InvalidArgumentError("max_nodes and max_edges must be positive")
        # A bare string is a sequence of characters: it would match nothing
        # (edge types) or match by substring (node types).
        if isinstance(self.edge_types, str) or isinstance(self.node_types, str):
            raise InvalidArgumentError("edge_types and node_types must be lists of names")
        if self.edge_types is not None and not self.edge_types:
            raise InvalidArgumentError("edge_types must not be empty when given")
        if self.node_types is not None and not self.node_types:
            raise InvalidArgumentError("node_types must not be empty when given")


@dataclass(frozen=True, slots=True)
class Subgraph:
    center: str
    nodes: list[NodeRow] = field(default_factory=list)
    edges: list[EdgeRow] = field(default_factory=list)
    truncated: bool = False


def get_context_subgraph(
    store: EventStore,
    tenant_id: str,
    node_type: str,
    node_id: str,
    max_depth: int = 1,
    filter_opts: GraphFilter | None = None,
) -> Subgraph:
    """Breadth-first neighbourhood of ``node_type:node_id``, by levels."""
    ensure_current(store, tenant_id, CONTEXT_GRAPH)
    if filter_opts is None:
        filter_opts = GraphFilter(max_depth=max_depth)
    elif max_depth != 1:
        filter_opts = GraphFilter(
            filter_opts.edge_types,
            filter_opts.node_types,
            max_depth,
            filter_opts.max_nodes,
            filter_opts.max_edges,
        )
    center = f"{node_type}:{node_id}"
    visited_nodes = {center}
    visited_edges: dict[str, EdgeRow] = {}
    frontier = {center}
    truncated = False
    depth = 0
    node_types = filter_opts.node_types
    while frontier and not truncated and depth < filter_opts.max_depth:
        rows = store.edges_touching(tenant_id, sorted(frontier), filter_opts.edge_types)
        next_frontier: set[str] = set()
        for edge in rows:
            if edge.edge_id in visited_edges:
                continue
            if len(visited_edges) >= filter_opts.max_edges:
                truncated = True
                break
            visited_edges[edge.edge_id] = edge
            for node in (edge.from_node_id, edge.to_node_id):
                if node in visited_nodes:
                    continue
                if node_types is not None and node.partition(":")[0] not in node_types:
                    continue
                if len(visited_nodes) >= filter_opts.max_nodes:
                    truncated = True
                    break
                visited_nodes.add(node)
                next_frontier.add(node)
            if truncated:
                break
        frontier = next_frontier
        depth += 1
    return Subgraph(
        center=center,
        nodes=store.get_nodes(tenant_id, sorted(visited_nodes)),
        edges=[visited_edges[key] for key in sorted(visited_edges)],
        truncated=truncated,
    )


@dataclass(frozen=True, slots=True)
class GraphEdgeCursor:
    edge_key: str
    direction: str
    log_seq: int | None = None

    def __post_init__(self) -> None:
        if not self.edge_key:
            raise InvalidArgumentError("cursor edge_key must not be empty")
        if self.direction not in DIRECTIONS:
            raise InvalidArgumentError(f"direction must be one of {', '.join(DIRECTIONS)}")
        if self.log_seq is not None and self.log_seq <= 0:
            raise InvalidArgumentError("cursor log_seq must be positive")

    def as_text(self) -> str:
        """The cursor as one opaque string (``direction:log_seq:edge_key``),
        as the HTTP API hands it out; the direction travels with it."""
        return f"{self.direction}:{self.log_seq or 0}:{self.edge_key}"

    @classmethod
    def from_text(cls, text: str) -> GraphEdgeCursor:
        """Parse :meth:`as_text`; anything else is INVALID_ARGUMENT."""
        direction, _, rest = text.partition(":")
        seq, _, edge_key = rest.partition(":")
        if not (seq.isascii() and seq.isdigit()) or not edge_key or int(seq) > 2**63 - 1:
            raise InvalidArgumentError(
                "Malformed cursor: pass back the next_cursor of the previous page",
                details={"cursor": text[:200]},
            )
        return cls(edge_key, direction, int(seq) or None)


@dataclass(frozen=True, slots=True)
class EdgePage:
    edges: list[EdgeRow]
    next_cursor: GraphEdgeCursor | None


def list_node_edges(
    store: EventStore,
    tenant_id: str,
    node: str,
    direction: str = "both",
    cursor: GraphEdgeCursor | None = None,
    limit: int = 100,
) -> EdgePage:
    """One page of a node's edges in (log_seq, edge_id) order."""
    ensure_current(store, tenant_id, CONTEXT_GRAPH)
    if direction not in DIRECTIONS:
        raise InvalidArgumentError(f"direction must be one of {', '.join(DIRECTIONS)}")
    if limit <= 0:
        raise InvalidArgumentError("limit must be positive")
    after: tuple[int, str] | None = None
    if cursor is not None:
        if cursor.direction != direction:
            raise InvalidArgumentError("cursor direction does not match the request")
        seq = cursor.log_seq
        if seq is None:
            edge = store.get_edge(tenant_id, cursor.edge_key)
            if edge is None:
                raise InvalidArgumentError(f"Unknown cursor edge '{cursor.edge_key}'")
            seq = edge.log_seq
        after = (seq, cursor.edge_key)
    rows = store.edge_page(tenant_id, node, direction, after, limit + 1)
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = page[-1]
        next_cursor = GraphEdgeCursor(last.edge_id, direction, last.log_seq)
    return EdgePage(page, next_cursor)
