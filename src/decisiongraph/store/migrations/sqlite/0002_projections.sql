-- Projection tables; every row carries its tenant. Text compares bytewise
-- (SQLite's BINARY collation), i.e. by code point, as digests require.
CREATE TABLE dg_cg_nodes (
    tenant_id     TEXT    NOT NULL,
    node_id       TEXT    NOT NULL,
    node_type     TEXT    NOT NULL,
    trace_id      TEXT    NOT NULL,
    log_seq       INTEGER NOT NULL,
    created_at    TEXT    NOT NULL,
    metadata_json TEXT    NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, node_id)
) WITHOUT ROWID;

CREATE TABLE dg_cg_edges (
    tenant_id     TEXT    NOT NULL,
    edge_id       TEXT    NOT NULL,
    edge_type     TEXT    NOT NULL,
    from_node_id  TEXT    NOT NULL,
    to_node_id    TEXT    NOT NULL,
    trace_id      TEXT    NOT NULL,
    log_seq       INTEGER NOT NULL,
    created_at    TEXT    NOT NULL,
    metadata_json TEXT    NOT NULL DEFAULT '{}',
    UNIQUE (tenant_id, edge_id)
);
CREATE INDEX idx_cg_edges_from ON dg_cg_edges (tenant_id, from_node_id, log_seq, edge_id);
CREATE INDEX idx_cg_edges_to ON dg_cg_edges (tenant_id, to_node_id, log_seq, edge_id);

CREATE TABLE dg_trace_summary (
    tenant_id           TEXT    NOT NULL,
    trace_id            TEXT    NOT NULL,
    workflow            TEXT    NOT NULL,
    title               TEXT    NOT NULL,
    primary_entity_type TEXT,
    primary_entity_id   TEXT,
    outcome             TEXT,
    started_at          TEXT    NOT NULL,
    finished_at         TEXT,
    event_count         INTEGER NOT NULL,
    last_log_seq        INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, trace_id)
) WITHOUT ROWID;
CREATE INDEX idx_trace_summary_recent ON dg_trace_summary (tenant_id, last_log_seq);
CREATE INDEX idx_trace_summary_entity
    ON dg_trace_summary (tenant_id, primary_entity_type, primary_entity_id);

CREATE TABLE dg_policy_eval_index (
    tenant_id      TEXT    NOT NULL,
    index_id       TEXT    NOT NULL,
    trace_id       TEXT    NOT NULL,
    policy_id      TEXT    NOT NULL,
    policy_version TEXT    NOT NULL,
    log_seq        INTEGER NOT NULL,
    created_at     TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, index_id)
) WITHOUT ROWID;

CREATE TABLE dg_precedent_index (
    tenant_id             TEXT    NOT NULL,
    source_event_id       TEXT    NOT NULL,
    log_seq               INTEGER NOT NULL,
    trace_id              TEXT    NOT NULL,
    policy_id             TEXT    NOT NULL,
    policy_version        TEXT    NOT NULL,
    exception_id          TEXT,
    primary_entity_type   TEXT,
    primary_entity_system TEXT,
    primary_entity_id     TEXT,
    PRIMARY KEY (tenant_id, source_event_id)
) WITHOUT ROWID;
CREATE INDEX idx_precedent_trace ON dg_precedent_index (tenant_id, trace_id);
CREATE INDEX idx_precedent_policy ON dg_precedent_index (tenant_id, policy_id, policy_version);

CREATE TABLE dg_projection_cursor (
    tenant_id       TEXT    NOT NULL,
    projection_name TEXT    NOT NULL,
    last_log_seq    INTEGER NOT NULL,
    updated_at      TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, projection_name)
) WITHOUT ROWID;
