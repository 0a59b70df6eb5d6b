-- Model providers of a workspace: an OpenAI-compatible endpoint and the
-- workspace's own API key for it (bring your own key), sealed with the
-- vault's keyring like connection secrets, the provider's id as additional
-- data. key_hint is what may be shown of the key ("sk-…abcd").
CREATE TABLE model_providers (
    id             TEXT PRIMARY KEY,
    workspace_id   TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    base_url       TEXT NOT NULL,
    key_id         TEXT NOT NULL,
    key_ciphertext BYTEA NOT NULL,
    key_hint       TEXT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX model_providers_name ON model_providers (workspace_id, lower(name));
CREATE INDEX model_providers_key ON model_providers (key_id);

-- What each model of a provider costs, in integer micro-dollars (a
-- millionth of a US dollar) per million tokens, so both databases agree to
-- the last digit; and the most completion tokens a call may ask for, which
-- bounds its worst-case cost.
CREATE TABLE model_prices (
    provider_id       TEXT NOT NULL REFERENCES model_providers (id) ON DELETE CASCADE,
    model             TEXT NOT NULL,
    position          INTEGER NOT NULL,
    input_per_mtok    BIGINT NOT NULL CHECK (input_per_mtok >= 0),
    output_per_mtok   BIGINT NOT NULL CHECK (output_per_mtok >= 0),
    max_output_tokens INTEGER NOT NULL CHECK (max_output_tokens > 0),
    PRIMARY KEY (provider_id, model)
);
