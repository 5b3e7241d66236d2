-- The append-only event log, one gap-free log_seq sequence per tenant.
-- A rowid table: rows are large (payloads), and appends land at its end.
CREATE TABLE dg_event_log (
    tenant_id          TEXT    NOT NULL,
    log_seq            INTEGER NOT NULL,
    event_id           TEXT    NOT NULL,
    trace_id           TEXT    NOT NULL,
    trace_seq          INTEGER NOT NULL,
    event_type         TEXT    NOT NULL,
    occurred_at        TEXT    NOT NULL,
    recorded_at        TEXT    NOT NULL,
    producer_id        TEXT    NOT NULL,
    system             TEXT    NOT NULL,
    subsystem          TEXT,
    actor_type         TEXT    NOT NULL,
    actor_id           TEXT    NOT NULL,
    correlation_id     TEXT,
    causation_event_id TEXT,
    idempotency_key    TEXT    NOT NULL,
    schema_version     INTEGER NOT NULL DEFAULT 1,
    payload_json       TEXT    NOT NULL,
    payload_hash       TEXT    NOT NULL,
    tags_json          TEXT    NOT NULL DEFAULT '[]',
    chain_hash         TEXT    NOT NULL,
    UNIQUE (tenant_id, log_seq)
);
CREATE UNIQUE INDEX idx_event_log_event_id ON dg_event_log (tenant_id, event_id);
CREATE UNIQUE INDEX idx_event_log_trace_seq ON dg_event_log (tenant_id, trace_id, trace_seq);
CREATE UNIQUE INDEX idx_event_log_idempotency ON dg_event_log (tenant_id, producer_id, idempotency_key);
CREATE INDEX idx_event_log_event_type ON dg_event_log (tenant_id, event_type, log_seq);
-- Serves the finished-trace lock (trigger and pre-check) in O(1).
CREATE INDEX idx_event_log_finished ON dg_event_log (tenant_id, trace_id)
    WHERE event_type = 'TraceFinished';
CREATE INDEX idx_event_log_correlation ON dg_event_log (tenant_id, correlation_id)
    WHERE correlation_id IS NOT NULL;

-- The head pins the last link of each tenant's chain (truncation is visible).
CREATE TABLE dg_log_head (
    tenant_id    TEXT    NOT NULL PRIMARY KEY,
    last_log_seq INTEGER NOT NULL,
    chain_hash   TEXT    NOT NULL
);

CREATE TRIGGER dg_block_events_after_finish BEFORE INSERT ON dg_event_log
WHEN NEW.event_type <> 'TraceFinished' AND EXISTS (
    SELECT 1 FROM dg_event_log INDEXED BY idx_event_log_finished
    WHERE tenant_id = NEW.tenant_id AND trace_id = NEW.trace_id AND event_type = 'TraceFinished')
BEGIN
    SELECT RAISE(ABORT, 'trace_finished');
END;

CREATE TRIGGER dg_event_log_no_update BEFORE UPDATE ON dg_event_log
BEGIN
    SELECT RAISE(ABORT, 'append_only: events are never updated');
END;

CREATE TRIGGER dg_event_log_no_delete BEFORE DELETE ON dg_event_log
BEGIN
    SELECT RAISE(ABORT, 'append_only: events are never deleted');
END;
