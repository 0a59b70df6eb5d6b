-- A failed run retried from the step that failed: the retry is a new run
-- that links back to it and starts with copies of the steps it completed.
ALTER TABLE runs ADD COLUMN retry_of TEXT REFERENCES runs (id) ON DELETE SET NULL;
CREATE INDEX runs_retry_of ON runs (retry_of) WHERE retry_of IS NOT NULL;
