-- One row per subscription of an instant app trigger (the app pushes each
-- event to TaskJuice). A live row belongs to a published workflow whose
-- trigger is instant; at most one per workflow. token is the random,
-- unguessable part of its delivery address /webhooks/triggers/{token}.
-- subscription_id is the app-side webhook's id (empty until subscribed, or
-- when nothing was created at the app: manual apps). secret_handle is the
-- vault handle of the signing secret (sealed like
-- webhook_endpoints.secret_handle). route_key routes deliveries to an
-- app-wide address (Slack: the team id).
--
-- state: subscribing (waiting to be created at the app), subscribed,
-- manual (the address is to be pasted at the app), failed (subscribing
-- failed: retried at next_attempt_at, last_error says why), unsubscribing
-- (the workflow no longer listens: a tombstone kept until the webhook is
-- deleted at the app, retried at next_attempt_at). No foreign key to
-- workflows: a deleted workflow's tombstone must outlive it.
-- lease_until marks a subscribe or unsubscribe in flight.
CREATE TABLE instant_triggers (
    token           TEXT PRIMARY KEY,
    workflow_id     TEXT NOT NULL,
    node_id         TEXT NOT NULL,
    app             TEXT NOT NULL,
    trigger_key     TEXT NOT NULL,
    connection_id   TEXT NOT NULL,
    inputs          TEXT NOT NULL,
    subscription_id TEXT NOT NULL DEFAULT '',
    secret_handle   TEXT,
    route_key       TEXT NOT NULL DEFAULT '',
    manual          BOOLEAN NOT NULL DEFAULT FALSE,
    state           TEXT NOT NULL,
    last_error      TEXT NOT NULL DEFAULT '',
    failures        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ,
    lease_until     TIMESTAMPTZ,
    generation      BIGINT NOT NULL DEFAULT 1,
    subscribed_at   TIMESTAMPTZ,
    last_event_at   TIMESTAMPTZ,
    events_received BIGINT NOT NULL DEFAULT 0,
    runs_started    BIGINT NOT NULL DEFAULT 0,
    created_at      TIMESTAMPTZ NOT NULL
);
-- The live row of a workflow (Sync, State, Remove).
CREATE UNIQUE INDEX instant_triggers_live ON instant_triggers (workflow_id) WHERE state <> 'unsubscribing';
CREATE INDEX instant_triggers_workflow ON instant_triggers (workflow_id);
-- The retry pass: only rows with work pending are indexed.
CREATE INDEX instant_triggers_pending ON instant_triggers (next_attempt_at) WHERE state IN ('subscribing', 'failed', 'unsubscribing');
-- Deliveries to an app-wide address, routed by app and route key.
CREATE INDEX instant_triggers_route ON instant_triggers (app, route_key) WHERE route_key <> '';
