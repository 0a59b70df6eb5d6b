-- Workflows and their numbered versions. A version holds the graph document;
-- at most one version of a workflow is active (dispatching) and at most one
-- is a draft being edited. The workflow's status is derived: an operator
-- state (archived, disabled, paused-safety) when set, else published while a
-- version is active, else draft.
CREATE TABLE workflows (
    id                TEXT PRIMARY KEY,
    workspace_id      TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name              TEXT NOT NULL,
    description       TEXT NOT NULL DEFAULT '',
    operator_state    TEXT NOT NULL DEFAULT '' CHECK (operator_state IN ('', 'archived', 'disabled', 'paused-safety')),
    active_version_id TEXT,
    next_version      INTEGER NOT NULL DEFAULT 1,
    created_by        TEXT REFERENCES users (id) ON DELETE SET NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL
);
CREATE INDEX workflows_workspace ON workflows (workspace_id, name);

CREATE TABLE workflow_versions (
    id           TEXT PRIMARY KEY,
    workflow_id  TEXT NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    number       INTEGER NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('draft', 'active', 'inactive')),
    graph        TEXT NOT NULL,
    based_on     INTEGER,
    created_by   TEXT REFERENCES users (id) ON DELETE SET NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    published_at TIMESTAMPTZ,
    UNIQUE (workflow_id, number)
);
-- One draft and one active version per workflow, at most.
CREATE UNIQUE INDEX workflow_versions_one_draft ON workflow_versions (workflow_id) WHERE state = 'draft';
CREATE UNIQUE INDEX workflow_versions_one_active ON workflow_versions (workflow_id) WHERE state = 'active';
