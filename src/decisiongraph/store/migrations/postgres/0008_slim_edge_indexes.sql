-- The edge-walk indexes carried edge_id, the longest column, only to order
-- edges that share a log_seq; an event adds at most two edges, so sorting
-- those few at read time is free, while the wider entries made every
-- projected edge rewrite about three times as many index pages.
DROP INDEX IF EXISTS idx_cg_edges_from;
DROP INDEX IF EXISTS idx_cg_edges_to;
CREATE INDEX idx_cg_edges_from ON dg_cg_edges (tenant_id, from_node_id, log_seq);
CREATE INDEX idx_cg_edges_to ON dg_cg_edges (tenant_id, to_node_id, log_seq);
DROP INDEX IF EXISTS idx_shadow_cg_edges_from;
DROP INDEX IF EXISTS idx_shadow_cg_edges_to;
CREATE INDEX idx_shadow_cg_edges_from ON dg_shadow_cg_edges (tenant_id, from_node_id, log_seq);
CREATE INDEX idx_shadow_cg_edges_to ON dg_shadow_cg_edges (tenant_id, to_node_id, log_seq);
