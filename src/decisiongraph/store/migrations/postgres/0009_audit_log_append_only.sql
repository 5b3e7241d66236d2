-- The audit log records who retried, skipped or rebuilt what and why; like
-- the event log it is only ever appended to, so the database refuses edits
-- and deletions rather than trusting every writer to behave.
CREATE OR REPLACE FUNCTION dg_audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'append_only: audit entries are never updated or deleted';
END $$;
DROP TRIGGER IF EXISTS dg_audit_log_append_only ON dg_audit_log;
CREATE TRIGGER dg_audit_log_append_only BEFORE UPDATE OR DELETE ON dg_audit_log
    FOR EACH ROW EXECUTE FUNCTION dg_audit_log_append_only();
