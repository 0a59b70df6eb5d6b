-- Connections: one stored credential for one app in one workspace. The
-- secret itself lives in the vault table (credentials), encrypted; the
-- connection row holds only a handle to it, written by server code alone.

CREATE TABLE credentials (
    handle      TEXT PRIMARY KEY,
    key_id      TEXT NOT NULL,
    ciphertext  BYTEA NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
-- Key rotation re-encrypts by key id.
CREATE INDEX credentials_key ON credentials (key_id);

CREATE TABLE connections (
    id                    TEXT PRIMARY KEY,
    workspace_id          TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    app_key               TEXT NOT NULL,
    label                 TEXT NOT NULL,
    status                TEXT NOT NULL CHECK (status IN ('active', 'pending', 'error', 'revoked')),
    status_reason         TEXT NOT NULL DEFAULT '',
    status_changed_at     TIMESTAMPTZ NOT NULL,
    -- Non-secret facts: extra fields such as a subdomain, as a JSON object.
    metadata              TEXT NOT NULL DEFAULT '{}',
    external_account_id   TEXT NOT NULL DEFAULT '',
    external_account_name TEXT NOT NULL DEFAULT '',
    -- Who owns it: the workspace's staff, or a client of the workspace.
    owner_kind            TEXT NOT NULL CHECK (owner_kind IN ('workspace', 'client')),
    owner_user_id         TEXT REFERENCES users (id) ON DELETE SET NULL,
    secret_handle         TEXT UNIQUE REFERENCES credentials (handle),
    -- Bumped by every change of the stored credential, so a refresher that
    -- lost a race can tell its failure from a real revocation.
    credential_version    BIGINT NOT NULL DEFAULT 0,
    access_expires_at     TIMESTAMPTZ,
    -- When the refresher should next look at this connection; NULL when it
    -- needs nothing (no expiry, or not active).
    refresh_due_at        TIMESTAMPTZ,
    refresh_lease_owner   TEXT NOT NULL DEFAULT '',
    refresh_lease_until   TIMESTAMPTZ,
    refresh_failures      INTEGER NOT NULL DEFAULT 0,
    created_by            TEXT REFERENCES users (id) ON DELETE SET NULL,
    created_at            TIMESTAMPTZ NOT NULL,
    updated_at            TIMESTAMPTZ NOT NULL
);
CREATE INDEX connections_workspace ON connections (workspace_id, status, app_key);
-- The refresher's pass reads only what is due: an index range, never a scan.
CREATE INDEX connections_refresh_due ON connections (refresh_due_at) WHERE refresh_due_at IS NOT NULL;

-- Health history: every status change of a connection, with why and who.
CREATE TABLE connection_events (
    id            TEXT PRIMARY KEY,
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    at            TIMESTAMPTZ NOT NULL,
    from_status   TEXT NOT NULL,
    to_status     TEXT NOT NULL,
    reason        TEXT NOT NULL,
    actor_kind    TEXT NOT NULL CHECK (actor_kind IN ('user', 'client', 'system')),
    actor_user_id TEXT REFERENCES users (id) ON DELETE SET NULL,
    -- JSON object with facts of the change, e.g. the external account before
    -- and after a reconnect.
    detail        TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX connection_events_connection ON connection_events (connection_id, at);
