-- Runs can be found by a value in their trigger payload or in a step's
-- output. A background indexer writes one row per searchable value of a
-- run (the field as an expression names it, "trigger.customer.email", and
-- the value: "=" and the exact text for equals, "~" and a lowercase word
-- or list item for contains), so a search is one index range whatever the
-- number of runs. runs.searched says how far a run is indexed: 0 not yet,
-- 1 its trigger payload (it had not finished), 2 also its steps' outputs.
ALTER TABLE runs ADD COLUMN searched INTEGER NOT NULL DEFAULT 0;
CREATE INDEX runs_search_todo ON runs (searched, finished_at) WHERE searched < 2;

CREATE TABLE run_values (
    workspace_id TEXT NOT NULL,
    field        TEXT NOT NULL,
    value        TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    run_id       TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE
);
CREATE INDEX run_values_search ON run_values (workspace_id, field, value, created_at, run_id);
CREATE INDEX run_values_run ON run_values (run_id);

-- The other filters of the runs list, each one index range (a workflow's
-- runs newest first, checked against the workspace within the index).
DROP INDEX runs_workflow_created;
CREATE INDEX runs_workflow_created ON runs (workflow_id, created_at, id, workspace_id);
-- A status's runs newest first along the index (the pause reason, set on
-- paused runs alone, is checked in it rather than ordering it).
DROP INDEX runs_workspace_status;
CREATE INDEX runs_workspace_status ON runs (workspace_id, status, created_at, id, pause_reason);
CREATE INDEX runs_workspace_source ON runs (workspace_id, source, created_at, id);
CREATE INDEX runs_workspace_error ON runs (workspace_id, error_code, created_at, id) WHERE status = 'failed';
