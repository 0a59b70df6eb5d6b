-- Run ids are random (people tell runs apart by their first characters), so
-- runs lists go newest first by creation time, the id breaking ties.
DROP INDEX runs_workspace;
DROP INDEX runs_workspace_status;
CREATE INDEX runs_workspace ON runs (workspace_id, created_at, id);
CREATE INDEX runs_workspace_status ON runs (workspace_id, status, pause_reason, created_at, id);
