-- Durable signals about connections, written in the same transaction as the
-- status change that causes them: needs_reauth when a connection moves to
-- error, reauthorized when it is active again. The run engine and the
-- notifications read them; each signal is raised exactly once per transition.
CREATE TABLE connection_signals (
    id            TEXT PRIMARY KEY,
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    kind          TEXT NOT NULL CHECK (kind IN ('needs_reauth', 'reauthorized')),
    reason        TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX connection_signals_created ON connection_signals (created_at, id);
CREATE INDEX connection_signals_connection ON connection_signals (connection_id, created_at);
