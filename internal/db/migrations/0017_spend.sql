-- Spend caps: a hard cap per workspace on model spend in a calendar month
-- (UTC), in integer micro-dollars. No row means no cap.
CREATE TABLE spend_caps (
    workspace_id TEXT PRIMARY KEY REFERENCES workspaces (id) ON DELETE CASCADE,
    cap_micros   BIGINT NOT NULL CHECK (cap_micros > 0),
    period       TEXT NOT NULL DEFAULT 'month' CHECK (period IN ('month')),
    updated_at   TIMESTAMPTZ NOT NULL
);

-- One model call: reserved at its worst-case cost before it is sent,
-- settled at its actual cost, or released when it failed before costing
-- anything. ref names the call (for example run/step/attempt) and is unique
-- per workspace, so a call retried after a crash is never counted twice.
-- period ('2026-11') and day ('2026-11-05') are the UTC month and day the
-- call was reserved in, so both databases group alike.
CREATE TABLE spend_entries (
    id                TEXT PRIMARY KEY,
    workspace_id      TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    ref               TEXT NOT NULL,
    run_id            TEXT,
    step_key          TEXT NOT NULL DEFAULT '',
    provider_id       TEXT NOT NULL DEFAULT '',
    model             TEXT NOT NULL DEFAULT '',
    status            TEXT NOT NULL CHECK (status IN ('reserved', 'settled', 'released')),
    reserved_micros   BIGINT NOT NULL CHECK (reserved_micros >= 0),
    cost_micros       BIGINT NOT NULL DEFAULT 0 CHECK (cost_micros >= 0),
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    period            TEXT NOT NULL,
    day               TEXT NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    reserved_at       TIMESTAMPTZ NOT NULL,
    settled_at        TIMESTAMPTZ,
    UNIQUE (workspace_id, ref)
);
CREATE INDEX spend_entries_period ON spend_entries (workspace_id, period, status);

-- The soft alerts of a period (50, 80 and 95 percent of the cap): the
-- primary key lets each be raised at most once per period per workspace,
-- whichever process gets there first.
CREATE TABLE spend_alerts (
    workspace_id    TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    period          TEXT NOT NULL,
    threshold       INTEGER NOT NULL,
    notification_id TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (workspace_id, period, threshold)
);
