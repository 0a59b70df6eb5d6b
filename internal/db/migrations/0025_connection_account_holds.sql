-- A reconnect that brought back a different external account than the one
-- the connection was made with keeps the runs it held (paused for reauth on
-- it) held until someone decides: "Release them anyway", or reconnecting
-- with the original account. One row per connection; released_at set means
-- decided. Owned by internal/connection; the engine reads it before it
-- resumes held runs.
CREATE TABLE connection_account_holds (
    connection_id         TEXT PRIMARY KEY REFERENCES connections (id) ON DELETE CASCADE,
    -- The account the held runs were made with, and the one now connected.
    previous_account_id   TEXT NOT NULL,
    previous_account_name TEXT NOT NULL,
    new_account_id        TEXT NOT NULL,
    new_account_name      TEXT NOT NULL,
    created_at            TIMESTAMPTZ NOT NULL,
    released_at           TIMESTAMPTZ,
    released_by           TEXT REFERENCES users (id) ON DELETE SET NULL,
    -- 'released' (a person let the runs go on) or 'original-account'
    -- (reconnected with the account they were made with).
    release_reason        TEXT NOT NULL DEFAULT ''
);
