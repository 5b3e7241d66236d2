-- The finished-trace lock is decided by the append plan under the tenant's
-- head-row lock, which every append takes; the per-row trigger repeated that
-- check on each insert. Writes that bypass the store are caught by the hash
-- chain (`decisiongraph verify`), not by triggers.
DROP TRIGGER IF EXISTS dg_block_events_after_finish ON dg_event_log;
DROP FUNCTION IF EXISTS dg_block_events_after_finish();
DROP INDEX IF EXISTS idx_event_log_finished;
