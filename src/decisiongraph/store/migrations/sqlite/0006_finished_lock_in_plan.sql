-- The finished-trace lock is decided by the append plan under the write
-- lock, which every append takes; the per-row trigger repeated that check on
-- each insert at a quarter of the insert cost. Writes that bypass the store
-- are caught by the hash chain (`decisiongraph verify`), not by triggers.
DROP TRIGGER IF EXISTS dg_block_events_after_finish;
DROP INDEX IF EXISTS idx_event_log_finished;
