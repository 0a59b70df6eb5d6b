-- Notifications of a workspace, with read state per person. A broken
-- connection raises one unresolved reauth notification (never two while it
-- stays broken); its reconnect resolves it, which counts as read for all.
CREATE TABLE notifications (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    kind          TEXT NOT NULL,
    severity      TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    title         TEXT NOT NULL,
    body          TEXT NOT NULL,
    link          TEXT NOT NULL,
    connection_id TEXT REFERENCES connections (id) ON DELETE CASCADE,
    created_at    TIMESTAMPTZ NOT NULL,
    resolved_at   TIMESTAMPTZ
);
CREATE INDEX notifications_workspace ON notifications (workspace_id, created_at);
CREATE UNIQUE INDEX notifications_one_open_reauth ON notifications (connection_id) WHERE kind = 'reauth' AND resolved_at IS NULL;

CREATE TABLE notification_reads (
    notification_id TEXT NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    read_at         TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (notification_id, user_id)
);
