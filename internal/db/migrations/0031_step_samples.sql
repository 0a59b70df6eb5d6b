-- The sample data a workflow is built against: the trigger's sample (a
-- pasted one) under the trigger's node id, and each step's last test
-- output, with the time it took and its error. Testing writes no run.
CREATE TABLE step_samples (
    workflow_id  TEXT NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    node_id      TEXT NOT NULL,
    source       TEXT NOT NULL,
    data         TEXT NOT NULL DEFAULT 'null',
    error        TEXT NOT NULL DEFAULT '',
    duration_ms  BIGINT NOT NULL DEFAULT 0,
    updated_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (workflow_id, node_id)
);
