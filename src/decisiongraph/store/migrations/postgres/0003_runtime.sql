-- Projection runtime: leases, dead letters, worker-reported state, audit,
-- and shadow tables for online rebuilds.

-- One owner per (tenant, projection); expires_at is epoch seconds by the
-- database's clock so hosts with skewed clocks agree on expiry.
CREATE TABLE dg_projection_lease (
    tenant_id       TEXT COLLATE "C"    NOT NULL,
    projection_name TEXT COLLATE "C"    NOT NULL,
    owner           TEXT COLLATE "C"    NOT NULL,
    acquired_at     DOUBLE PRECISION    NOT NULL,
    expires_at      DOUBLE PRECISION    NOT NULL,
    PRIMARY KEY (tenant_id, projection_name)
);

-- What workers report: last error, attempts, the rebuild in progress.
CREATE TABLE dg_projection_state (
    tenant_id       TEXT COLLATE "C"    NOT NULL,
    projection_name TEXT COLLATE "C"    NOT NULL,
    last_error      TEXT COLLATE "C",
    last_error_at   TEXT COLLATE "C",
    rebuilding      BIGINT NOT NULL DEFAULT 0,
    rebuild_owner   TEXT COLLATE "C",
    rebuild_started_at TEXT COLLATE "C",
    updated_at      TEXT COLLATE "C"    NOT NULL,
    PRIMARY KEY (tenant_id, projection_name)
);

-- Events a projection could not apply; the projection stops there.
CREATE TABLE dg_dead_letter (
    id              BIGSERIAL PRIMARY KEY,
    tenant_id       TEXT COLLATE "C"    NOT NULL,
    projection_name TEXT COLLATE "C"    NOT NULL,
    log_seq         BIGINT NOT NULL,
    event_id        TEXT COLLATE "C"    NOT NULL,
    error_code      TEXT COLLATE "C"    NOT NULL,
    message         TEXT COLLATE "C"    NOT NULL,
    attempts        BIGINT NOT NULL,
    first_seen_at   TEXT COLLATE "C"    NOT NULL,
    last_seen_at    TEXT COLLATE "C"    NOT NULL,
    status          TEXT COLLATE "C"    NOT NULL DEFAULT 'open',
    resolved_at     TEXT COLLATE "C",
    resolution      TEXT COLLATE "C",
    UNIQUE (tenant_id, projection_name, log_seq)
);

-- Operator actions (retries, skips, rebuilds): who, when, why.
CREATE TABLE dg_audit_log (
    id           BIGSERIAL PRIMARY KEY,
    tenant_id    TEXT COLLATE "C"    NOT NULL,
    at           TEXT COLLATE "C"    NOT NULL,
    actor        TEXT COLLATE "C"    NOT NULL,
    action       TEXT COLLATE "C"    NOT NULL,
    target       TEXT COLLATE "C"    NOT NULL,
    reason       TEXT COLLATE "C"    NOT NULL,
    details_json TEXT COLLATE "C"    NOT NULL DEFAULT '{}'
);
CREATE INDEX idx_audit_tenant ON dg_audit_log (tenant_id, id);

-- Shadow copies of the projection tables: online rebuilds fill these while
-- reads are served from the live tables, then swap in one transaction.
CREATE TABLE dg_shadow_cg_nodes (
    tenant_id     TEXT COLLATE "C"    NOT NULL,
    node_id       TEXT COLLATE "C"    NOT NULL,
    node_type     TEXT COLLATE "C"    NOT NULL,
    trace_id      TEXT COLLATE "C"    NOT NULL,
    log_seq       BIGINT NOT NULL,
    created_at    TEXT COLLATE "C"    NOT NULL,
    metadata_json TEXT COLLATE "C"    NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, node_id)
);

CREATE TABLE dg_shadow_cg_edges (
    tenant_id     TEXT COLLATE "C"    NOT NULL,
    edge_id       TEXT COLLATE "C"    NOT NULL,
    edge_type     TEXT COLLATE "C"    NOT NULL,
    from_node_id  TEXT COLLATE "C"    NOT NULL,
    to_node_id    TEXT COLLATE "C"    NOT NULL,
    trace_id      TEXT COLLATE "C"    NOT NULL,
    log_seq       BIGINT NOT NULL,
    created_at    TEXT COLLATE "C"    NOT NULL,
    metadata_json TEXT COLLATE "C"    NOT NULL DEFAULT '{}',
    UNIQUE (tenant_id, edge_id)
);
CREATE INDEX idx_shadow_cg_edges_from ON dg_shadow_cg_edges (tenant_id, from_node_id, log_seq, edge_id);
CREATE INDEX idx_shadow_cg_edges_to ON dg_shadow_cg_edges (tenant_id, to_node_id, log_seq, edge_id);

CREATE TABLE dg_shadow_trace_summary (
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
CREATE INDEX idx_shadow_trace_summary_recent ON dg_shadow_trace_summary (tenant_id, last_log_seq);
CREATE INDEX idx_shadow_trace_summary_entity
    ON dg_shadow_trace_summary (tenant_id, primary_entity_type, primary_entity_id);

CREATE TABLE dg_shadow_policy_eval_index (
    tenant_id      TEXT COLLATE "C"    NOT NULL,
    index_id       TEXT COLLATE "C"    NOT NULL,
    trace_id       TEXT COLLATE "C"    NOT NULL,
    policy_id      TEXT COLLATE "C"    NOT NULL,
    policy_version TEXT COLLATE "C"    NOT NULL,
    log_seq        BIGINT NOT NULL,
    created_at     TEXT COLLATE "C"    NOT NULL,
    PRIMARY KEY (tenant_id, index_id)
);

CREATE TABLE dg_shadow_precedent_index (
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
CREATE INDEX idx_shadow_precedent_trace ON dg_shadow_precedent_index (tenant_id, trace_id);
CREATE INDEX idx_shadow_precedent_policy ON dg_shadow_precedent_index (tenant_id, policy_id, policy_version);

CREATE TABLE dg_shadow_projection_cursor (
    tenant_id       TEXT COLLATE "C"    NOT NULL,
    projection_name TEXT COLLATE "C"    NOT NULL,
    last_log_seq    BIGINT NOT NULL,
    updated_at      TEXT COLLATE "C"    NOT NULL,
    PRIMARY KEY (tenant_id, projection_name)
);
