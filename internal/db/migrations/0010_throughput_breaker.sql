-- The throughput breaker: a workflow starting more runs in a minute than
-- this limit goes to Paused (safety) and starts nothing until someone
-- clears it. 0 means no limit.
ALTER TABLE workflows ADD COLUMN max_runs_per_minute INTEGER NOT NULL DEFAULT 0;
CREATE INDEX runs_workflow_created ON runs (workflow_id, created_at);
