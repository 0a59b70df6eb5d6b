-- A step row carries what resuming and showing the run need, once:
--   * its key is (run_id, node_id, attempt), the one index of the table:
--     every read of steps is by run, and the step id is kept as a plain
--     column (it is not looked up), so a step costs one index entry where
--     it cost three (id, the attempt's uniqueness, run order);
--   * input is stored only when it is not the output of another step of
--     the run or the trigger payload; otherwise input_from names where it
--     came from: the frontier entry whose output it is, or '' for the
--     trigger payload;
--   * idempotency_key is stored only when it differs from run_id:node_id,
--     the key the engine gives every entry (readers derive it).
CREATE TABLE run_steps_lean (
    run_id          TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    node_id         TEXT NOT NULL,
    attempt         INTEGER NOT NULL,
    id              TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'waiting', 'paused')),
    input           TEXT,
    input_from      TEXT,
    output          TEXT,
    console         TEXT NOT NULL DEFAULT '',
    error           TEXT,
    idempotency_key TEXT,
    started_at      TIMESTAMPTZ NOT NULL,
    finished_at     TIMESTAMPTZ,
    PRIMARY KEY (run_id, node_id, attempt)
);
INSERT INTO run_steps_lean (run_id, node_id, attempt, id, status, input, output, console, error, idempotency_key, started_at, finished_at)
    SELECT run_id, node_id, attempt, id, status, input, output, console, error,
        CASE WHEN idempotency_key = run_id || ':' || node_id THEN NULL ELSE idempotency_key END, started_at, finished_at
    FROM run_steps;
DROP TABLE run_steps;
ALTER TABLE run_steps_lean RENAME TO run_steps;
-- PostgreSQL only
ALTER INDEX run_steps_lean_pkey RENAME TO run_steps_pkey;
-- A run's middle steps change none of its indexed columns; room left in
-- each page lets PostgreSQL rewrite the row in place (a heap-only update)
-- instead of adding an entry to every index of runs per step.
ALTER TABLE runs SET (fillfactor = 80);
