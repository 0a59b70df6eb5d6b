-- Consent flows in progress. The state sent to the provider is random and
-- only its SHA-256 is kept; it is single-use (used_at), expires, and is bound
-- to the signed-in session that started it. The PKCE verifier is sealed with
-- the credential key.
CREATE TABLE oauth_states (
    state_hash      TEXT PRIMARY KEY,
    session_binding TEXT NOT NULL,
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    workspace_id    TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    connection_id   TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    reconnect       BOOLEAN NOT NULL,
    verifier_key_id TEXT NOT NULL,
    verifier        BYTEA NOT NULL,
    return_to       TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    expires_at      TIMESTAMPTZ NOT NULL,
    used_at         TIMESTAMPTZ
);
CREATE INDEX oauth_states_expires ON oauth_states (expires_at);
