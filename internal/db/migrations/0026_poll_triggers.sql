-- One row per workflow whose live trigger polls an app (an app trigger of
-- the catalog read through a connection). cursor_value is where the app's
-- items were read up to: the poller advances it only past items whose runs
-- are recorded (each run carries the item's app-side id as its dedup key,
-- so a retried or overlapping poll starts nothing twice). primed is false
-- until the first poll after publishing recorded the cursor. generation
-- changes whenever the trigger's settings change, so a poll that began
-- before cannot write over them. A held trigger (its connection broken) is
-- not polled until its connection is active again; it then resumes from
-- its cursor. A poller claims a due row with a lease (lease_owner,
-- lease_until), like runs and schedules.
CREATE TABLE poll_triggers (
    workflow_id    TEXT PRIMARY KEY REFERENCES workflows (id) ON DELETE CASCADE,
    node_id        TEXT NOT NULL,
    app            TEXT NOT NULL,
    trigger_key    TEXT NOT NULL,
    connection_id  TEXT NOT NULL,
    inputs         TEXT NOT NULL,
    include_recent BOOLEAN NOT NULL DEFAULT FALSE,
    interval_ms    BIGINT NOT NULL,
    cursor_value   TEXT NOT NULL DEFAULT '',
    primed         BOOLEAN NOT NULL DEFAULT FALSE,
    generation     BIGINT NOT NULL DEFAULT 1,
    next_poll_at   TIMESTAMPTZ NOT NULL,
    lease_owner    TEXT NOT NULL DEFAULT '',
    lease_until    TIMESTAMPTZ,
    held           BOOLEAN NOT NULL DEFAULT FALSE,
    failures       INTEGER NOT NULL DEFAULT 0,
    last_poll_at   TIMESTAMPTZ,
    last_error     TEXT NOT NULL DEFAULT '',
    runs_started   BIGINT NOT NULL DEFAULT 0,
    created_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX poll_triggers_due ON poll_triggers (next_poll_at);
CREATE INDEX poll_triggers_connection ON poll_triggers (connection_id);
-- Each tick looks for held triggers whose connection came back; only the
-- held ones are indexed, so the look costs nothing while none is held.
CREATE INDEX poll_triggers_held ON poll_triggers (connection_id) WHERE held;
