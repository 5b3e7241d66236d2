-- The append-only event log, one gap-free log_seq sequence per tenant.
CREATE TABLE dg_event_log (
    tenant_id          TEXT COLLATE "C"    NOT NULL,
    log_seq            BIGINT NOT NULL,
    event_id           TEXT COLLATE "C"    NOT NULL,
    trace_id           TEXT COLLATE "C"    NOT NULL,
    trace_seq          BIGINT NOT NULL,
    event_type         TEXT COLLATE "C"    NOT NULL,
    occurred_at        TEXT COLLATE "C"    NOT NULL,
    recorded_at        TEXT COLLATE "C"    NOT NULL,
    producer_id        TEXT COLLATE "C"    NOT NULL,
    system             TEXT COLLATE "C"    NOT NULL,
    subsystem          TEXT COLLATE "C",
    actor_type         TEXT COLLATE "C"    NOT NULL,
    actor_id           TEXT COLLATE "C"    NOT NULL,
    correlation_id     TEXT COLLATE "C",
    causation_event_id TEXT COLLATE "C",
    idempotency_key    TEXT COLLATE "C"    NOT NULL,
    schema_version     BIGINT NOT NULL DEFAULT 1,
    payload_json       TEXT COLLATE "C"    NOT NULL,
    payload_hash       TEXT COLLATE "C"    NOT NULL,
    tags_json          TEXT COLLATE "C"    NOT NULL DEFAULT '[]',
    chain_hash         TEXT COLLATE "C"    NOT NULL,
    PRIMARY KEY (tenant_id, log_seq)
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
    tenant_id    TEXT COLLATE "C"    NOT NULL PRIMARY KEY,
    last_log_seq BIGINT NOT NULL,
    chain_hash   TEXT COLLATE "C"    NOT NULL
);



CREATE FUNCTION dg_block_events_after_finish() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.event_type <> 'TraceFinished' AND EXISTS (
        SELECT 1 FROM dg_event_log
        WHERE tenant_id = NEW.tenant_id AND trace_id = NEW.trace_id
          AND event_type = 'TraceFinished') THEN
        RAISE EXCEPTION 'trace_finished';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER dg_block_events_after_finish BEFORE INSERT ON dg_event_log
    FOR EACH ROW EXECUTE FUNCTION dg_block_events_after_finish();

CREATE FUNCTION dg_event_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'append_only: events are never updated or deleted';
END $$;
CREATE TRIGGER dg_event_log_append_only BEFORE UPDATE OR DELETE ON dg_event_log
    FOR EACH ROW EXECUTE FUNCTION dg_event_log_append_only();
