-- Clients and the portal.

-- An email may carry a link whose token is minted only when it is sent
-- (mail.Outbox expanders): ref names what the link is for (an invitation,
-- a client request), so the raw token never rests in the database.
ALTER TABLE outbound_emails ADD COLUMN ref TEXT NOT NULL DEFAULT '';

-- A resent invitation is a fresh email; sent_at is when it last went out.
ALTER TABLE invitations ADD COLUMN sent_at TIMESTAMPTZ;

-- The connection a client provided for a node whose source is "Client
-- provides the connection". It belongs to the workflow, not to a version:
-- every version (and every run, whatever version it started on) resolves
-- the node to it at run time. Owned by internal/workflow.
CREATE TABLE workflow_client_connections (
    workflow_id   TEXT NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    node_id       TEXT NOT NULL,
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    bound_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (workflow_id, node_id)
);
CREATE INDEX workflow_client_connections_connection ON workflow_client_connections (connection_id);

-- Runs parked until a client connects an app: a short partial index, so
-- the engine's sweep reads only them.
CREATE INDEX runs_client_wait ON runs (workflow_id) WHERE status = 'waiting' AND wait_reason = 'client-connection';

-- One dispatch of a workspace's request queue to a client: one email, one
-- sign-in link. Only the SHA-256 of the link's token is kept, written when
-- the email is sent (a resend mints a new one, the old link stops
-- working). The link works until link_expires_at (7 days) and once; the
-- request in the client's inbox works until expires_at (4 hours after it
-- was sent, or after the link was opened).
CREATE TABLE client_request_batches (
    id              TEXT PRIMARY KEY,
    workspace_id    TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    client_user_id  TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    note            TEXT NOT NULL DEFAULT '',
    sent_by         TEXT REFERENCES users (id) ON DELETE SET NULL,
    sent_at         TIMESTAMPTZ NOT NULL,
    expires_at      TIMESTAMPTZ NOT NULL,
    link_hash       TEXT UNIQUE,
    link_expires_at TIMESTAMPTZ NOT NULL,
    link_used_at    TIMESTAMPTZ
);
CREATE INDEX client_request_batches_workspace ON client_request_batches (workspace_id, sent_at);
CREATE INDEX client_request_batches_client ON client_request_batches (client_user_id, sent_at);

-- One app a client is asked to connect: for a node of a workflow whose
-- source is "Client provides the connection", or to reconnect a client's
-- connection. batch_id is NULL while the request waits in the queue;
-- connection_id is the connection the client's consent creates (or
-- reconnects), connected_at when it succeeded.
CREATE TABLE client_requests (
    id                TEXT PRIMARY KEY,
    workspace_id      TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    batch_id          TEXT REFERENCES client_request_batches (id) ON DELETE CASCADE,
    app_key           TEXT NOT NULL,
    workflow_id       TEXT REFERENCES workflows (id) ON DELETE CASCADE,
    node_id           TEXT NOT NULL DEFAULT '',
    reconnect         BOOLEAN NOT NULL DEFAULT FALSE,
    connection_id     TEXT REFERENCES connections (id) ON DELETE SET NULL,
    requested_by      TEXT REFERENCES users (id) ON DELETE SET NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    connected_at      TIMESTAMPTZ
);
CREATE INDEX client_requests_workspace ON client_requests (workspace_id, batch_id, created_at);
CREATE INDEX client_requests_batch ON client_requests (batch_id);
CREATE INDEX client_requests_connection ON client_requests (connection_id);
