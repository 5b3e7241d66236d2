"""Physical table names of the projections: the live set and the shadow set.

Online rebuilds build a projection into the shadow tables while reads are
served from the live ones; every projection writer and digest reader takes a
:class:`TableSet` so the same code fills either.
"""

from __future__ import annotations

from dataclasses import dataclass

from decisiongraph.projections.rows import (
    CONTEXT_GRAPH,
    POLICY_EVAL_INDEX,
    PRECEDENT_INDEX,
    TRACE_SUMMARY,
)


@dataclass(frozen=True, slots=True)
class TableSet:
    nodes: str
    edges: str
    summary: str
    policy: str
    precedent: str
    cursor: str

    def of(self, projection: str) -> tuple[str, ...]:
        """The tables holding ``projection``'s rows."""
        return {
            CONTEXT_GRAPH: (self.edges, self.nodes),
            TRACE_SUMMARY: (self.summary,),
            PRECEDENT_INDEX: (self.precedent,),
            POLICY_EVAL_INDEX: (self.policy,),
        }[projection]


LIVE = TableSet(
    nodes="dg_cg_nodes",
    edges="dg_cg_edges",
    summary="dg_trace_summary",
    policy="dg_policy_eval_index",
    precedent="dg_precedent_index",
    cursor="dg_projection_cursor",
)
SHADOW = TableSet(
    nodes="dg_shadow_cg_nodes",
    edges="dg_shadow_cg_edges",
    summary="dg_shadow_trace_summary",
    policy="dg_shadow_policy_eval_index",
    precedent="dg_shadow_precedent_index",
    cursor="dg_shadow_projection_cursor",
)
