-- Webhook and schedule triggers. A webhook endpoint is addressed by a random
-- token (UUID v4) that is independent of the workflow id, so regenerating it
-- retires the old URL at once. The shared secret of the bearer, header and
-- HMAC modes is sealed with the vault key (AAD = workflow id); it is NULL
-- while none is set.
CREATE TABLE webhook_endpoints (
    workflow_id   TEXT PRIMARY KEY REFERENCES workflows (id) ON DELETE CASCADE,
    token         TEXT NOT NULL UNIQUE,
    secret_key_id TEXT,
    secret        BYTEA,
    created_at    TIMESTAMPTZ NOT NULL,
    rotated_at    TIMESTAMPTZ
);

-- One row per workflow with a live schedule trigger. next_fire_at is the
-- next tick not yet fired; a scheduler claims a due row with a lease
-- (compare-and-set on lease_until), starts one run, and moves next_fire_at
-- past the present, so ticks missed while no server was running fire once.
CREATE TABLE schedule_state (
    workflow_id  TEXT PRIMARY KEY REFERENCES workflows (id) ON DELETE CASCADE,
    cron         TEXT NOT NULL,
    timezone     TEXT NOT NULL,
    last_fire_at TIMESTAMPTZ,
    next_fire_at TIMESTAMPTZ NOT NULL,
    lease_owner  TEXT NOT NULL DEFAULT '',
    lease_until  TIMESTAMPTZ
);
CREATE INDEX schedule_state_due ON schedule_state (next_fire_at);
