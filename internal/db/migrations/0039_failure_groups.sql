-- A failed run keeps its error code and the step it failed at in columns
-- of their own, so failures can be grouped and filtered by them (the
-- failed-runs inbox) through an index of failed runs alone.
ALTER TABLE runs ADD COLUMN error_code TEXT;
ALTER TABLE runs ADD COLUMN failed_node TEXT;
CREATE INDEX runs_failed ON runs (workspace_id, workflow_id, failed_node, error_code, created_at) WHERE status = 'failed';
CREATE INDEX runs_replay_of ON runs (replay_of) WHERE replay_of IS NOT NULL;
