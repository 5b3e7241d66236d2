-- Projection runtime: leases, dead letters, worker-reported state, audit,
-- and shadow tables for online rebuilds.

-- One owner per (tenant, projection); expires_at is epoch seconds by the
-- database's clock so hosts with skewed clocks agree on expiry.
CREATE TABLE dg_projection_lease (
    tenant_id       TEXT    NOT NULL,
    projection_name TEXT    NOT NULL,
    owner           TEXT    NOT NULL,
    acquired_at     REAL    NOT NULL,
    expires_at      REAL    NOT NULL,
    PRIMARY KEY (tenant_id, projection_name)
);

-- What workers report: last error, attempts, the rebuild in progress.
CREATE TABLE dg_projection_state (
    tenant_id       TEXT    NOT NULL,
    projection_name TEXT    NOT NULL,
    last_error      TEXT,
    last_error_at   TEXT,
    rebuilding      INTEGER NOT NULL DEFAULT 0,
    rebuild_owner   TEXT,
    rebuild_started_at TEXT,
    updated_at      TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, projection_name)
);

-- Events a projection could not apply; the projection stops there.
CREATE TABLE dg_dead_letter (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id       TEXT    NOT NULL,
    projection_name TEXT    NOT NULL,
    log_seq         INTEGER NOT NULL,
    event_id        TEXT    NOT NULL,
    error_code      TEXT    NOT NULL,
    message         TEXT    NOT NULL,
    attempts        INTEGER NOT NULL,
    first_seen_at   TEXT    NOT NULL,
    last_seen_at    TEXT    NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'open',
    resolved_at     TEXT,
    resolution      TEXT,
    UNIQUE (tenant_id, projection_name, log_seq)
);

-- Operator actions (retries, skips, rebuilds): who, when, why.
CREATE TABLE dg_audit_log (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id    TEXT    NOT NULL,
    at           TEXT    NOT NULL,
    actor        TEXT    NOT NULL,
    action       TEXT    NOT NULL,
    target       TEXT    NOT NULL,
    reason       TEXT    NOT NULL,
    details_json TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX idx_audit_tenant ON dg_audit_log (tenant_id, id);

-- Shadow copies of the projection tables: online rebuilds fill these while
-- reads are served from the live tables, then swap in one transaction.
CREATE TABLE dg_shadow_cg_nodes (
    tenant_id     TEXT    NOT NULL,
    node_id       TEXT    NOT NULL,
    node_type     TEXT    NOT NULL,
    trace_id      TEXT    NOT NULL,
    log_seq       INTEGER NOT NULL,
    created_at    TEXT    NOT NULL,
    metadata_json TEXT    NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, node_id)
) WITHOUT ROWID;

CREATE TABLE dg_shadow_cg_edges (
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
CREATE INDEX idx_shadow_cg_edges_from ON dg_shadow_cg_edges (tenant_id, from_node_id, log_seq, edge_id);
CREATE INDEX idx_shadow_cg_edges_to ON dg_shadow_cg_edges (tenant_id, to_node_id, log_seq, edge_id);

CREATE TABLE dg_shadow_trace_summary (
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
CREATE INDEX idx_shadow_trace_summary_recent ON dg_shadow_trace_summary (tenant_id, last_log_seq);
CREATE INDEX idx_shadow_trace_summary_entity
    ON dg_shadow_trace_summary (tenant_id, primary_entity_type, primary_entity_id);

CREATE TABLE dg_shadow_policy_eval_index (
    tenant_id      TEXT    NOT NULL,
    index_id       TEXT    NOT NULL,
    trace_id       TEXT    NOT NULL,
    policy_id      TEXT    NOT NULL,
    policy_version TEXT    NOT NULL,
    log_seq        INTEGER NOT NULL,
    created_at     TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, index_id)
) WITHOUT ROWID;

CREATE TABLE dg_shadow_precedent_index (
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
CREATE INDEX idx_shadow_precedent_trace ON dg_shadow_precedent_index (tenant_id, trace_id);
CREATE INDEX idx_shadow_precedent_policy ON dg_shadow_precedent_index (tenant_id, policy_id, policy_version);

CREATE TABLE dg_shadow_projection_cursor (
    tenant_id       TEXT    NOT NULL,
    projection_name TEXT    NOT NULL,
    last_log_seq    INTEGER NOT NULL,
    updated_at      TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, projection_name)
) WITHOUT ROWID;
