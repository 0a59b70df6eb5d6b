-- Email waiting to go out over SMTP. It is written in the same transaction
-- as what it tells of, so a crash never loses or invents one; a mailer in
-- any process delivers it, retrying with backoff.
CREATE TABLE outbound_emails (
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    to_address      TEXT NOT NULL,
    subject         TEXT NOT NULL,
    text_body       TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    -- When to try next; NULL once sent or given up.
    next_attempt_at TIMESTAMPTZ,
    attempts        INTEGER NOT NULL DEFAULT 0,
    lease_until     TIMESTAMPTZ,
    sent_at         TIMESTAMPTZ,
    last_error      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX outbound_emails_due ON outbound_emails (next_attempt_at) WHERE next_attempt_at IS NOT NULL;

-- Critical alerts are emailed to the account's owner and admins unless the
-- account turns it off.
ALTER TABLE accounts ADD COLUMN alert_emails BOOLEAN NOT NULL DEFAULT TRUE;
