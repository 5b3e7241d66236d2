-- A rebuild claim stays valid only while its rebuilder keeps beating (epoch
-- seconds by the database's clock); a dead rebuilder's claim lapses.
ALTER TABLE dg_projection_state ADD COLUMN rebuild_heartbeat_at DOUBLE PRECISION;
