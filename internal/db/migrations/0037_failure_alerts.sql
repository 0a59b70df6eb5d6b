-- Failure alerts. Settings per workflow, and a workspace's default
-- (workflow_id ''): when to tell (the first failure after a success, every
-- failure, a daily digest, or never) and whom (the bell, staff by email, a
-- chat channel through a connection, a signed outgoing webhook whose
-- signing secret is sealed in the vault).
CREATE TABLE failure_alert_settings (
    workspace_id       TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    workflow_id        TEXT NOT NULL DEFAULT '',
    mode               TEXT NOT NULL CHECK (mode IN ('off', 'first', 'every', 'digest')),
    bell               BOOLEAN NOT NULL DEFAULT TRUE,
    emails             TEXT NOT NULL DEFAULT '',
    chat_connection_id TEXT REFERENCES connections (id) ON DELETE SET NULL,
    chat_channel       TEXT NOT NULL DEFAULT '',
    webhook_url        TEXT NOT NULL DEFAULT '',
    webhook_secret     TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (workspace_id, workflow_id)
);

-- One incident per workflow and error code until the workflow succeeds
-- again: failures in between count on it instead of alerting anew.
CREATE TABLE failure_incidents (
    id             TEXT PRIMARY KEY,
    workspace_id   TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    workflow_id    TEXT NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    error_code     TEXT NOT NULL,
    message        TEXT NOT NULL,
    failures       INTEGER NOT NULL,
    first_run_id   TEXT NOT NULL,
    last_run_id    TEXT NOT NULL,
    opened_at      TIMESTAMPTZ NOT NULL,
    last_failed_at TIMESTAMPTZ NOT NULL,
    recovered_at   TIMESTAMPTZ,
    -- When a daily digest told it (digest mode only).
    digested_at    TIMESTAMPTZ
);
CREATE INDEX failure_incidents_workflow ON failure_incidents (workflow_id, digested_at);
CREATE UNIQUE INDEX failure_incidents_open ON failure_incidents (workflow_id, error_code) WHERE recovered_at IS NULL;
CREATE INDEX failure_incidents_unrecovered ON failure_incidents (last_failed_at) WHERE recovered_at IS NULL;

-- Alerts to send to a chat channel or a webhook, written in the transaction
-- that raised them and sent by whichever process is free, with retries.
CREATE TABLE alert_deliveries (
    id              TEXT PRIMARY KEY,
    workspace_id    TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    kind            TEXT NOT NULL CHECK (kind IN ('chat', 'webhook')),
    target          TEXT NOT NULL,
    channel         TEXT NOT NULL DEFAULT '',
    -- The webhook's signing secret: its vault handle and owner.
    secret_handle   TEXT NOT NULL DEFAULT '',
    secret_owner    TEXT NOT NULL DEFAULT '',
    payload         TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    next_attempt_at TIMESTAMPTZ,
    attempts        INTEGER NOT NULL DEFAULT 0,
    lease_until     TIMESTAMPTZ,
    sent_at         TIMESTAMPTZ,
    last_error      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX alert_deliveries_due ON alert_deliveries (next_attempt_at) WHERE next_attempt_at IS NOT NULL;
