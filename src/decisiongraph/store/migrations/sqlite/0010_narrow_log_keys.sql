-- Index 64-bit digests of the event id and the idempotency key instead of
-- the text (see decisiongraph/store/log_keys.py): random keys rewrote most
-- leaf pages of both wide indexes on every commit. The digests come from
-- functions the store registers on its connection before migrating. A
-- digest several stored texts share (a collision) stays on the first of
-- their rows and is NULL on the others, as the store itself stores a new
-- row whose digest is taken.
ALTER TABLE dg_event_log ADD COLUMN event_key INTEGER;
ALTER TABLE dg_event_log ADD COLUMN idem_key INTEGER;

DROP TRIGGER IF EXISTS dg_event_log_no_update;
UPDATE dg_event_log SET
    event_key = dg_event_key(tenant_id, event_id),
    idem_key = dg_idem_key(tenant_id, producer_id, idempotency_key);
UPDATE dg_event_log SET event_key = NULL WHERE rowid IN (
    SELECT rowid FROM (
        SELECT rowid, ROW_NUMBER() OVER (PARTITION BY event_key ORDER BY rowid) AS nth
        FROM dg_event_log)
    WHERE nth > 1);
UPDATE dg_event_log SET idem_key = NULL WHERE rowid IN (
    SELECT rowid FROM (
        SELECT rowid, ROW_NUMBER() OVER (PARTITION BY idem_key ORDER BY rowid) AS nth
        FROM dg_event_log)
    WHERE nth > 1);
CREATE TRIGGER dg_event_log_no_update BEFORE UPDATE ON dg_event_log
BEGIN
    SELECT RAISE(ABORT, 'append_only: events are never updated');
END;

DROP INDEX IF EXISTS idx_event_log_event_id;
DROP INDEX IF EXISTS idx_event_log_idempotency;
CREATE UNIQUE INDEX idx_event_log_event_key ON dg_event_log (event_key);
CREATE UNIQUE INDEX idx_event_log_idem_key ON dg_event_log (idem_key);
