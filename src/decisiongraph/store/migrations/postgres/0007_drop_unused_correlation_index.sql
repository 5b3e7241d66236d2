-- No read looks events up by correlation id, yet every append paid for this
-- index. A feature that needs the lookup adds it back with its query.
DROP INDEX IF EXISTS idx_event_log_correlation;
