-- Agents: an agent is a workflow of type 'agent' whose graph is a trigger
-- and one Agent step; its runs are agent runs (kind 'agent'), which resume
-- by themselves once a connection they were held on is reconnected.
ALTER TABLE workflows ADD COLUMN type TEXT NOT NULL DEFAULT 'workflow' CHECK (type IN ('workflow', 'agent'));
ALTER TABLE runs ADD COLUMN kind TEXT NOT NULL DEFAULT 'workflow' CHECK (kind IN ('workflow', 'agent'));
