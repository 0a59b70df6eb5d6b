-- Origins an owner or admin allowed one connection's credential to be sent
-- to besides those its app declares ("Allowed domains"), e.g. an upload
-- host of the same provider. Owned by internal/connection.
CREATE TABLE connection_allowed_domains (
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    -- scheme://host[:port], lower-case, without the scheme's default port.
    origin        TEXT NOT NULL,
    added_by      TEXT REFERENCES users (id) ON DELETE SET NULL,
    added_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (connection_id, origin)
);
