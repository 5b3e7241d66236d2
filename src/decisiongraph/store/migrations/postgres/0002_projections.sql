-- Projection tables; every row carries its tenant. Text compares bytewise
-- (COLLATE "C"), i.e. by code point, as digests require.
CREATE TABLE dg_cg_nodes (
    tenant_id     TEXT COLLATE "C"    NOT NULL,
    node_id       TEXT COLLATE "C"    NOT NULL,
    node_type     TEXT COLLATE "C"    NOT NULL,
    trace_id      TEXT COLLATE "C"    NOT NULL,
    log_seq       BIGINT NOT NULL,
    created_at    TEXT COLLATE "C"    NOT NULL,
    metadata_json TEXT COLLATE "C"    NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, node_id)
);

CREATE TABLE dg_cg_edges (
    tenant_id     TEXT COLLATE "C"    NOT NULL,
    edge_id       TEXT COLLATE "C"    NOT NULL,
    edge_type     TEXT COLLATE "C"    NOT NULL,
    from_node_id  TEXT COLLATE "C"    NOT NULL,
    to_node_id    TEXT COLLATE "C"    NOT NULL,
    trace_id      TEXT COLLATE "C"    NOT NULL,
    log_seq       BIGINT NOT NULL,
    created_at    TEXT COLLATE "C"    NOT NULL,
    metadata_json TEXT COLLATE "C"    NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, edge_id)
);
CREATE INDEX idx_cg_edges_from ON dg_cg_edges (tenant_id, from_node_id, log_seq, edge_id);
CREATE INDEX idx_cg_edges_to ON dg_cg_edges (tenant_id, to_node_id, log_seq, edge_id);

CREATE TABLE dg_trace_summary (
    tenant_id           TEXT COLLATE "C"    NOT NULL,
    trace_id            TEXT COLLATE "C"    NOT NULL,
    workflow            TEXT COLLATE "C"    NOT NULL,
    title               TEXT COLLATE "C"    NOT NULL,
    primary_entity_type TEXT COLLATE "C",
    primary_entity_id   TEXT COLLATE "C",
    outcome             TEXT COLLATE "C",
    started_at          TEXT COLLATE "C"    NOT NULL,
    finished_at         TEXT COLLATE "C",
    event_count         BIGINT NOT NULL,
    last_log_seq        BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, trace_id)
);
CREATE INDEX idx_trace_summary_recent ON dg_trace_summary (tenant_id, last_log_seq);
CREATE INDEX idx_trace_summary_entity
    ON dg_trace_summary (tenant_id, primary_entity_type, primary_entity_id);

CREATE TABLE dg_policy_eval_index (
    tenant_id      TEXT COLLATE "C"    NOT NULL,
    index_id       TEXT COLLATE "C"    NOT NULL,
    trace_id       TEXT COLLATE "C"    NOT NULL,
    policy_id      TEXT COLLATE "C"    NOT NULL,
    policy_version TEXT COLLATE "C"    NOT NULL,
    log_seq        BIGINT NOT NULL,
    created_at     TEXT COLLATE "C"    NOT NULL,
    PRIMARY KEY (tenant_id, index_id)
);

CREATE TABLE dg_precedent_index (
    tenant_id             TEXT COLLATE "C"    NOT NULL,
    source_event_id       TEXT COLLATE "C"    NOT NULL,
    log_seq               BIGINT NOT NULL,
    trace_id              TEXT COLLATE "C"    NOT NULL,
    policy_id             TEXT COLLATE "C"    NOT NULL,
    policy_version        TEXT COLLATE "C"    NOT NULL,
    exception_id          TEXT COLLATE "C",
    primary_entity_type   TEXT COLLATE "C",
    primary_entity_system TEXT COLLATE "C",
    primary_entity_id     TEXT COLLATE "C",
    PRIMARY KEY (tenant_id, source_event_id)
);
CREATE INDEX idx_precedent_trace ON dg_precedent_index (tenant_id, trace_id);
CREATE INDEX idx_precedent_policy ON dg_precedent_index (tenant_id, policy_id, policy_version);

CREATE TABLE dg_projection_cursor (
    tenant_id       TEXT COLLATE "C"    NOT NULL,
    projection_name TEXT COLLATE "C"    NOT NULL,
    last_log_seq    BIGINT NOT NULL,
    updated_at      TEXT COLLATE "C"    NOT NULL,
    PRIMARY KEY (tenant_id, projection_name)
);
