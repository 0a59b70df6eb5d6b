-- One vault for every secret. The credentials table, until now holding
-- connection secrets alone, holds every sealed value: connection
-- credentials, model providers' API keys, webhook secrets and the PKCE
-- verifiers of consent flows in flight. Each row keeps beside its
-- ciphertext the owner id it was sealed with as additional data and what
-- kind of secret it is, so one rotation loop can re-encrypt every row
-- without knowing who owns it, and nothing sealed elsewhere can be missed.
-- Existing ciphertexts move unchanged (same key id, same additional data).

ALTER TABLE credentials ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE credentials ADD COLUMN kind TEXT NOT NULL DEFAULT '';
UPDATE credentials SET kind = 'connection',
    owner = COALESCE((SELECT n.id FROM connections n WHERE n.secret_handle = credentials.handle), '');

-- Model providers' keys (additional data: the provider's id).
ALTER TABLE model_providers ADD COLUMN key_handle TEXT REFERENCES credentials (handle);
INSERT INTO credentials (handle, key_id, ciphertext, created_at, updated_at, owner, kind)
    SELECT 'model-' || id, key_id, key_ciphertext, created_at, updated_at, id, 'model_key' FROM model_providers;
UPDATE model_providers SET key_handle = 'model-' || id;
DROP INDEX model_providers_key;
ALTER TABLE model_providers DROP COLUMN key_id;
ALTER TABLE model_providers DROP COLUMN key_ciphertext;

-- Webhook secrets (additional data: the workflow's id).
ALTER TABLE webhook_endpoints ADD COLUMN secret_handle TEXT REFERENCES credentials (handle);
INSERT INTO credentials (handle, key_id, ciphertext, created_at, updated_at, owner, kind)
    SELECT 'webhook-' || workflow_id, secret_key_id, secret, created_at, COALESCE(rotated_at, created_at), workflow_id, 'webhook_secret'
    FROM webhook_endpoints WHERE secret IS NOT NULL;
UPDATE webhook_endpoints SET secret_handle = 'webhook-' || workflow_id WHERE secret IS NOT NULL;
ALTER TABLE webhook_endpoints DROP COLUMN secret_key_id;
ALTER TABLE webhook_endpoints DROP COLUMN secret;

-- PKCE verifiers of consent flows not yet completed (additional data: the
-- state's hash). A spent state's verifier is needed no more and is dropped;
-- a verifier's row goes once its state is spent, so no foreign key.
ALTER TABLE oauth_states ADD COLUMN verifier_handle TEXT;
INSERT INTO credentials (handle, key_id, ciphertext, created_at, updated_at, owner, kind)
    SELECT 'pkce-' || state_hash, verifier_key_id, verifier, created_at, created_at, state_hash, 'oauth_verifier'
    FROM oauth_states WHERE used_at IS NULL;
UPDATE oauth_states SET verifier_handle = 'pkce-' || state_hash WHERE used_at IS NULL;
ALTER TABLE oauth_states DROP COLUMN verifier_key_id;
ALTER TABLE oauth_states DROP COLUMN verifier;
