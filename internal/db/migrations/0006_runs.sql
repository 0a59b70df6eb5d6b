-- Runs: one execution of one workflow version, step by step. The database
-- is the truth: a worker claims a run with a lease, runs its next step,
-- and commits the step's result before the next one starts. A run that is
-- waiting or paused costs rows, not a goroutine.
CREATE TABLE runs (
    id                   TEXT PRIMARY KEY,
    workspace_id         TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    workflow_id          TEXT NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    version_id           TEXT NOT NULL REFERENCES workflow_versions (id),
    status               TEXT NOT NULL CHECK (status IN ('pending', 'running', 'waiting', 'paused', 'completed', 'failed', 'cancelled')),
    source               TEXT NOT NULL,
    trigger_payload      TEXT NOT NULL,
    dedup_key            TEXT,
    replay_of            TEXT REFERENCES runs (id) ON DELETE SET NULL,
    replay_depth         INTEGER NOT NULL DEFAULT 0,
    pause_reason         TEXT NOT NULL DEFAULT '' CHECK (pause_reason IN ('', 'reauth', 'operator', 'throughput', 'spend-cap')),
    paused_connection_id TEXT,
    wait_reason          TEXT NOT NULL DEFAULT '',
    error                TEXT,
    -- The steps still to run, in order (a JSON array of node ids).
    frontier             TEXT NOT NULL DEFAULT '[]',
    steps_done           INTEGER NOT NULL DEFAULT 0,
    -- When a worker should take the run up; NULL while there is nothing to
    -- do (waiting for an event, paused, finished).
    due_at               TIMESTAMPTZ,
    lease_owner          TEXT NOT NULL DEFAULT '',
    lease_until          TIMESTAMPTZ,
    created_at           TIMESTAMPTZ NOT NULL,
    started_at           TIMESTAMPTZ,
    finished_at          TIMESTAMPTZ,
    updated_at           TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX runs_dedup ON runs (workflow_id, dedup_key) WHERE dedup_key IS NOT NULL;
CREATE INDEX runs_due ON runs (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX runs_workspace ON runs (workspace_id, created_at, id);
CREATE INDEX runs_paused_connection ON runs (paused_connection_id) WHERE paused_connection_id IS NOT NULL;

-- One row per execution attempt of a node.
CREATE TABLE run_steps (
    id              TEXT PRIMARY KEY,
    run_id          TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    node_id         TEXT NOT NULL,
    attempt         INTEGER NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'waiting', 'paused')),
    input           TEXT,
    output          TEXT,
    console         TEXT NOT NULL DEFAULT '',
    error           TEXT,
    idempotency_key TEXT NOT NULL,
    started_at      TIMESTAMPTZ NOT NULL,
    finished_at     TIMESTAMPTZ,
    UNIQUE (run_id, node_id, attempt)
);
CREATE INDEX run_steps_run ON run_steps (run_id, started_at, id);

-- Who did what to a run (pause, resume, cancel, replay), and the engine's
-- own holds.
CREATE TABLE run_events (
    id            TEXT PRIMARY KEY,
    run_id        TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    at            TIMESTAMPTZ NOT NULL,
    action        TEXT NOT NULL,
    actor_user_id TEXT REFERENCES users (id) ON DELETE SET NULL,
    detail        TEXT NOT NULL DEFAULT ''
);
CREATE INDEX run_events_run ON run_events (run_id, at);

-- A run held until a connection is reauthorized; consumed exactly once.
CREATE TABLE pending_reauths (
    run_id        TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    created_at    TIMESTAMPTZ NOT NULL,
    consumed_at   TIMESTAMPTZ,
    PRIMARY KEY (run_id, connection_id)
);
CREATE INDEX pending_reauths_open ON pending_reauths (connection_id) WHERE consumed_at IS NULL;

-- Which connection signals the engine has acted on.
CREATE TABLE signal_consumption (
    signal_id   TEXT NOT NULL REFERENCES connection_signals (id) ON DELETE CASCADE,
    consumer    TEXT NOT NULL,
    consumed_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (signal_id, consumer)
);

-- "Resume held runs automatically after reconnect", per workflow.
ALTER TABLE workflows ADD COLUMN auto_resume_reauth BOOLEAN NOT NULL DEFAULT FALSE;
