-- The audit log records who retried, skipped or rebuilt what and why; like
-- the event log it is only ever appended to, so the database refuses edits
-- and deletions rather than trusting every writer to behave.
CREATE TRIGGER IF NOT EXISTS dg_audit_log_no_update BEFORE UPDATE ON dg_audit_log
BEGIN
    SELECT RAISE(ABORT, 'append_only: audit entries are never updated');
END;

CREATE TRIGGER IF NOT EXISTS dg_audit_log_no_delete BEFORE DELETE ON dg_audit_log
BEGIN
    SELECT RAISE(ABORT, 'append_only: audit entries are never deleted');
END;
