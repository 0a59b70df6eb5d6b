-- The runs held on a connection are counted on every page that shows its
-- alert (the banner, the bell) and where it is reconnected. With the status
-- and reason in the index the count reads the index alone, instead of one
-- row of runs per held run (2,000 random reads of a large SQLite file cost
-- the banner 6 ms).
DROP INDEX runs_paused_connection;
CREATE INDEX runs_paused_connection ON runs (paused_connection_id, status, pause_reason) WHERE paused_connection_id IS NOT NULL;
