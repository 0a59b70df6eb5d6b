-- Runs lists go newest first by id (ids are time-ordered), for the whole
-- workspace or one status (and pause reason): each is a range of one index,
-- however many runs the workspace has.
DROP INDEX runs_workspace;
CREATE INDEX runs_workspace ON runs (workspace_id, id);
CREATE INDEX runs_workspace_status ON runs (workspace_id, status, pause_reason, id);
