-- How long a workspace keeps its finished runs: at most this many days and
-- this many runs per workflow (defaults in engine.DefaultRetention), and
-- what the last pruning pass removed. Runs still going, waiting or held
-- are never pruned.
CREATE TABLE run_retention (
    workspace_id          TEXT PRIMARY KEY REFERENCES workspaces (id) ON DELETE CASCADE,
    days                  INTEGER NOT NULL,
    max_runs_per_workflow INTEGER NOT NULL,
    pruned_at             TIMESTAMPTZ,
    pruned_runs           INTEGER NOT NULL DEFAULT 0
);
