-- A workflow may name an error workflow: one that starts with the Error
-- trigger, started once for each of its failed runs with the failure.
ALTER TABLE workflows ADD COLUMN error_workflow_id TEXT REFERENCES workflows (id) ON DELETE SET NULL;
