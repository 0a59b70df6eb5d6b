-- Bulk actions on runs: a job, worked through in small batches by any
-- process (claimed with a lease), never one large transaction. Each
-- selected run is a row with its outcome: done, or skipped with why.
CREATE TABLE bulk_jobs (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    action        TEXT NOT NULL CHECK (action IN ('resume', 'retry', 'replay', 'cancel')),
    actor_user_id TEXT REFERENCES users (id) ON DELETE SET NULL,
    total         INTEGER NOT NULL,
    done          INTEGER NOT NULL DEFAULT 0,
    skipped       INTEGER NOT NULL DEFAULT 0,
    status        TEXT NOT NULL CHECK (status IN ('running', 'finished')),
    lease_owner   TEXT NOT NULL DEFAULT '',
    lease_until   TIMESTAMPTZ,
    created_at    TIMESTAMPTZ NOT NULL,
    finished_at   TIMESTAMPTZ
);
CREATE INDEX bulk_jobs_running ON bulk_jobs (created_at) WHERE status = 'running';
CREATE INDEX bulk_jobs_workspace ON bulk_jobs (workspace_id, created_at);

CREATE TABLE bulk_job_runs (
    job_id     TEXT NOT NULL REFERENCES bulk_jobs (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    run_id     TEXT NOT NULL,
    outcome    TEXT NOT NULL DEFAULT '' CHECK (outcome IN ('', 'done', 'skipped')),
    reason     TEXT NOT NULL DEFAULT '',
    new_run_id TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (job_id, seq)
);
CREATE INDEX bulk_job_runs_pending ON bulk_job_runs (job_id, seq) WHERE outcome = '';
