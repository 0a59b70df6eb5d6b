-- A renamed workspace's earlier addresses keep working for a while: each
-- slug it gives up is kept here with the time, and a page asked for at
-- that slug is redirected to the workspace's current one. A slug taken
-- again by a workspace leaves this table.
CREATE TABLE workspace_slug_history (
    account_id   TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    slug         TEXT NOT NULL,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    retired_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (account_id, slug)
);
