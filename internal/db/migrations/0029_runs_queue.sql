-- runs is a queue as well as a record: every run is claimed, moved on and
-- finished by updates that touch indexed columns (due_at, lease_until), so
-- each leaves dead index entries behind. Finished runs' entries sit at the
-- front of runs_due, where every claim starts reading, until a vacuum
-- clears them. PostgreSQL's default vacuums a table once a fifth of it is
-- dead, so the claim would read through more dead entries the more runs
-- the table holds; a fixed threshold keeps that read short whatever the
-- table's size. (SQLite updates in place and has no such entries.)
-- PostgreSQL only
ALTER TABLE runs SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 5000,
    autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 10000);
