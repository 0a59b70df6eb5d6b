-- Multi-factor authentication for staff (TOTP). The shared secret is
-- sealed in the vault (credentials, kind mfa_secret, additional data the
-- user's id); enabled_at is NULL while setup waits for its first code.
-- last_step is the last TOTP time step accepted, so a code is accepted once.
CREATE TABLE user_mfa (
    user_id       TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret_handle TEXT NOT NULL REFERENCES credentials (handle),
    created_at    TIMESTAMPTZ NOT NULL,
    enabled_at    TIMESTAMPTZ,
    last_step     BIGINT NOT NULL DEFAULT 0
);

-- Single-use backup codes; only their SHA-256 is kept.
CREATE TABLE mfa_backup_codes (
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash  TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    used_at    TIMESTAMPTZ,
    PRIMARY KEY (user_id, code_hash)
);

-- A sign-in whose password was right and whose code is still awaited. The
-- browser holds a random token; only its SHA-256 is stored.
CREATE TABLE mfa_challenges (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email      TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    wrong      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX mfa_challenges_expires ON mfa_challenges (expires_at);

-- An account's requirement that every staff member use MFA, from
-- required_at plus grace_days on.
CREATE TABLE account_mfa_policy (
    account_id  TEXT PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    required_at TIMESTAMPTZ NOT NULL,
    grace_days  INTEGER NOT NULL,
    set_by      TEXT REFERENCES users (id) ON DELETE SET NULL
);
