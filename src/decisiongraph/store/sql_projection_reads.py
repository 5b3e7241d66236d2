"""Reads of projection rows over SQL, the primitives the query layer uses."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from decisiongraph.projections.rows import (
    EdgeRow,
    NodeRow,
    PolicyEvalRow,
    PrecedentRow,
    TraceSummaryRow,
)
from decisiongraph.store.protocol import PrecedentHitRow
from decisiongraph.store.sql_backend import (
    EDGE_COLS,
    NODE_COLS,
    PRECEDENT_COLS,
    SUMMARY_COLS,
    SqlBackend,
    Streamer,
    chunks,
)
from decisiongraph.store.tables import LIVE, TableSet


class SqlProjectionReads(SqlBackend):
    """Node, edge, summary and precedent reads, per tenant."""

    # -- projection reads --------------------------------------------------------
    def _iter(
        self, sql: str, tenant_id: str, make: Callable[..., Any], stream: Streamer | None = None
    ) -> Iterator[Any]:
        """Rows of ``sql`` made into records; ``stream`` reads them inside a
        snapshot (see ``_snapshot``), by default each query reads afresh."""
        for row in (stream or self._stream)(self._sql(sql), (tenant_id,)):
            yield make(*row)

    def iter_nodes(
        self, tenant_id: str, t: TableSet = LIVE, stream: Streamer | None = None
    ) -> Iterator[NodeRow]:
        return self._iter(
            f"SELECT {NODE_COLS} FROM {t.nodes} WHERE tenant_id = ? ORDER BY node_id",
            tenant_id,
            NodeRow,
            stream,
        )

    def iter_edges(
        self, tenant_id: str, t: TableSet = LIVE, stream: Streamer | None = None
    ) -> Iterator[EdgeRow]:
        return self._iter(
            f"SELECT {EDGE_COLS} FROM {t.edges} WHERE tenant_id = ? ORDER BY edge_id",
            tenant_id,
            EdgeRow,
            stream,
        )

    def iter_summaries(
        self, tenant_id: str, t: TableSet = LIVE, stream: Streamer | None = None
    ) -> Iterator[TraceSummaryRow]:
        return self._iter(
            f"SELECT {SUMMARY_COLS} FROM {t.summary} WHERE tenant_id = ? ORDER BY trace_id",
            tenant_id,
            TraceSummaryRow,
            stream,
        )

    def iter_precedents(
        self, tenant_id: str, t: TableSet = LIVE, stream: Streamer | None = None
    ) -> Iterator[PrecedentRow]:
        return self._iter(
            f"SELECT {PRECEDENT_COLS} FROM {t.precedent} WHERE tenant_id = ? "
            "ORDER BY source_event_id",
            tenant_id,
            PrecedentRow,
            stream,
        )

    def iter_policy_rows(
        self, tenant_id: str, t: TableSet = LIVE, stream: Streamer | None = None
    ) -> Iterator[PolicyEvalRow]:
        return self._iter(
            "SELECT index_id, trace_id, policy_id, policy_version, log_seq, created_at "
            f"FROM {t.policy} WHERE tenant_id = ? ORDER BY index_id",
            tenant_id,
            PolicyEvalRow,
            stream,
        )

    def get_nodes(self, tenant_id: str, node_ids: Sequence[str]) -> list[NodeRow]:
        found: list[NodeRow] = []
        with self._read() as cur:
            for chunk in chunks(list(node_ids)):
                marks = ", ".join("?" for _ in chunk)
                rows = self._x(
                    cur,
                    f"SELECT {NODE_COLS} FROM dg_cg_nodes WHERE tenant_id = ? "
                    f"AND node_id IN ({marks})",
                    [tenant_id, *chunk],
                ).fetchall()
                found.extend(NodeRow(*row) for row in rows)
        found.sort(key=lambda node: node.node_id)
        return found

    def get_edge(self, tenant_id: str, edge_id: str) -> EdgeRow | None:
        with self._read() as cur:
            row = self._x(
                cur,
                f"SELECT {EDGE_COLS} FROM dg_cg_edges WHERE tenant_id = ? AND edge_id = ?",
                (tenant_id, edge_id),
            ).fetchone()
        return None if row is None else EdgeRow(*row)

    def edges_touching(
        self, tenant_id: str, node_ids: Sequence[str], edge_types: Sequence[str] | None
    ) -> list[EdgeRow]:
        found: dict[str, EdgeRow] = {}
        type_clause = ""
        type_params: list[Any] = []
        if edge_types is not None:
            type_clause = " AND edge_type IN (" + ", ".join("?" for _ in edge_types) + ")"
            type_params = list(edge_types)
        with self._read() as cur:
            for chunk in chunks(list(node_ids), 200):
                marks = ", ".join("?" for _ in chunk)
                for column in ("from_node_id", "to_node_id"):
                    rows = self._x(
                        cur,
                        f"SELECT {EDGE_COLS} FROM dg_cg_edges WHERE tenant_id = ? "
                        f"AND {column} IN ({marks}){type_clause}",
                        [tenant_id, *chunk, *type_params],
                    ).fetchall()
                    for row in rows:
                        found.setdefault(row[0], EdgeRow(*row))
        return [found[key] for key in sorted(found)]

    def edge_page(
        self,
        tenant_id: str,
        node_id: str,
        direction: str,
        after: tuple[int, str] | None,
        limit: int,
    ) -> list[EdgeRow]:
        columns = {
            "outgoing": ("from_node_id",),
            "incoming": ("to_node_id",),
            "both": ("from_node_id", "to_node_id"),
        }[direction]
        pages: list[EdgeRow] = []
        with self._read() as cur:
            for column in columns:
                sql = f"SELECT {EDGE_COLS} FROM dg_cg_edges WHERE tenant_id = ? AND {column} = ?"
                params: list[Any] = [tenant_id, node_id]
                if after is not None:
                    # The bare lower bound lets the index seek to the page.
                    sql += " AND log_seq >= ? AND (log_seq > ? OR edge_id > ?)"
                    params.extend((after[0], after[0], after[1]))
                sql += " ORDER BY log_seq, edge_id LIMIT ?"
                params.append(limit)
                pages.extend(EdgeRow(*row) for row in self._x(cur, sql, params).fetchall())
        unique = {edge.edge_id: edge for edge in pages}
        return sorted(unique.values(), key=lambda edge: (edge.log_seq, edge.edge_id))[:limit]

    def get_summary(self, tenant_id: str, trace_id: str) -> TraceSummaryRow | None:
        with self._read() as cur:
            row = self._x(
                cur,
                f"SELECT {SUMMARY_COLS} FROM dg_trace_summary WHERE tenant_id = ? AND trace_id = ?",
                (tenant_id, trace_id),
            ).fetchone()
        return None if row is None else TraceSummaryRow(*row)

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
    ) -> list[PrecedentHitRow]:
        where = ["s.tenant_id = ?", "s.outcome IS NOT NULL"]
        params: list[Any] = [tenant_id]
        for column, value in (
            ("s.outcome", outcome),
            ("s.primary_entity_type", entity_type),
            ("s.primary_entity_id", entity_id),
        ):
            if value:
                where.append(f"{column} = ?")
                params.append(value)
        if policy_id:
            inner = ["p.tenant_id = ?", "p.policy_id = ?"]
            inner_params: list[Any] = [tenant_id, policy_id]
            if policy_version:
                inner.append("p.policy_version = ?")
                inner_params.append(policy_version)
            sql = (
                "SELECT s.trace_id, s.workflow, s.title, s.outcome, b.policy_id, "
                "b.policy_version, s.finished_at FROM dg_trace_summary s JOIN ("
                "SELECT p.trace_id, p.policy_id, p.policy_version, ROW_NUMBER() OVER ("
                "PARTITION BY p.trace_id ORDER BY (p.exception_id IS NULL), p.log_seq DESC, "
                "p.source_event_id) AS pick FROM dg_precedent_index p WHERE "
                + " AND ".join(inner)
                + ") b ON b.trace_id = s.trace_id AND b.pick = 1 WHERE "
                + " AND ".join(where)
            )
            params = inner_params + params
        else:
            sql = (
                "SELECT s.trace_id, s.workflow, s.title, s.outcome, NULL, NULL, s.finished_at "
                "FROM dg_trace_summary s WHERE " + " AND ".join(where)
            )
        sql += " ORDER BY s.last_log_seq DESC, s.trace_id ASC LIMIT ?"
        params.append(limit)
        with self._read() as cur:
            rows = self._x(cur, sql, params).fetchall()
        return [PrecedentHitRow(*row) for row in rows]

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
    ) -> list[TraceSummaryRow]:
        """Trace summaries, most recently changed first (last_log_seq DESC,
        trace_id ASC), filtered, one keyset page after ``after``."""
        where = ["tenant_id = ?"]
        params: list[Any] = [tenant_id]
        for column, value in (
            ("workflow", workflow),
            ("outcome", outcome),
            ("primary_entity_type", entity_type),
            ("primary_entity_id", entity_id),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if since_log_seq is not None:
            where.append("last_log_seq > ?")
            params.append(since_log_seq)
        if after is not None:
            where.append("(last_log_seq < ? OR (last_log_seq = ? AND trace_id > ?))")
            params.extend((after[0], after[0], after[1]))
        sql = (
            f"SELECT {SUMMARY_COLS} FROM dg_trace_summary WHERE {' AND '.join(where)} "
            "ORDER BY last_log_seq DESC, trace_id ASC LIMIT ?"
        )
        params.append(limit)
        with self._read() as cur:
            return [TraceSummaryRow(*row) for row in self._x(cur, sql, params).fetchall()]
