-- cursor_at is when a polling trigger's cursor last moved (the first poll
-- after publishing records it too): the workflow page and the API show how
-- long the app has had nothing new. NULL until the first poll.
ALTER TABLE poll_triggers ADD COLUMN cursor_at TIMESTAMPTZ;
-- A trigger's recent events are the runs it started, newest first: one
-- index range per workflow and source, however many runs it has.
CREATE INDEX runs_workflow_source ON runs (workflow_id, source, created_at, id);
