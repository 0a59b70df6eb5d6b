package vault_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
	"taskjuice/internal/vault"
)

// eachBlank runs fn on an empty, unmigrated database of each engine.
func eachBlank(t *testing.T, fn func(t *testing.T, d *db.DB)) {
	open := func(t *testing.T, dsn string) *db.DB {
		d, err := db.Open(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		return d
	}
	t.Run("sqlite", func(t *testing.T) { fn(t, open(t, filepath.Join(t.TempDir(), "taskjuice.db"))) })
	if base := os.Getenv(dbtest.PostgresEnv); base != "" {
		t.Run("postgres", func(t *testing.T) { fn(t, open(t, dbtest.NewPostgresSchema(t, base))) })
	}
}

// The migration to one vault moves every sealed value written in the old
// places (a connection's credential, a model key, a webhook secret, the
// verifier of a consent in flight) into the vault table unchanged, with the
// owner each was sealed for, so each opens there and one rotation reaches
// them all. A spent consent's verifier is dropped.
func TestMigrationMovesEverySealedValue(t *testing.T) {
	eachBlank(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		if _, err := d.MigrateTo(ctx, 20); err != nil {
			t.Fatal(err)
		}
		key, _, err := vault.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		seal := func(plain, owner string) vault.Sealed {
			s, err := key.Seal([]byte(plain), []byte(owner))
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		now := db.Now()
		conn, model, hook, live, spent := seal("cred", "conn-1"), seal("sk-model", "prov-1"), seal("whsec", "wf-1"), seal("verifier", "state-1"), seal("old", "state-2")
		for _, q := range []struct {
			sql  string
			args []any
		}{
			{`INSERT INTO accounts (id, name, created_at) VALUES ('acc', 'Agency', $1)`, []any{now}},
			{`INSERT INTO users (id, email, name, password_hash, created_at, password_changed_at) VALUES ('u', 'u@a.example', 'U', 'x', $1, $1)`, []any{now}},
			{`INSERT INTO workspaces (id, account_id, name, slug, created_at) VALUES ('ws', 'acc', 'Acme', 'acme', $1)`, []any{now}},
			{`INSERT INTO credentials (handle, key_id, ciphertext, created_at, updated_at) VALUES ('h-conn', $1, $2, $3, $3)`, []any{conn.KeyID, conn.Ciphertext, now}},
			{`INSERT INTO connections (id, workspace_id, app_key, label, status, status_changed_at, owner_kind, secret_handle, created_at, updated_at)
				VALUES ('conn-1', 'ws', 'stripe', 'Stripe', 'active', $1, 'workspace', 'h-conn', $1, $1)`, []any{now}},
			{`INSERT INTO model_providers (id, workspace_id, name, base_url, key_id, key_ciphertext, key_hint, created_at, updated_at)
				VALUES ('prov-1', 'ws', 'P', 'https://api.example', $1, $2, '••••', $3, $3)`, []any{model.KeyID, model.Ciphertext, now}},
			{`INSERT INTO workflows (id, workspace_id, name, created_at, updated_at) VALUES ('wf-1', 'ws', 'Flow', $1, $1)`, []any{now}},
			{`INSERT INTO webhook_endpoints (workflow_id, token, secret_key_id, secret, created_at) VALUES ('wf-1', 'tok', $1, $2, $3)`, []any{hook.KeyID, hook.Ciphertext, now}},
			{`INSERT INTO oauth_states (state_hash, session_binding, user_id, workspace_id, connection_id, reconnect, verifier_key_id, verifier, return_to, created_at, expires_at)
				VALUES ('state-1', 's', 'u', 'ws', 'conn-1', FALSE, $1, $2, '/', $3, $3)`, []any{live.KeyID, live.Ciphertext, now}},
			{`INSERT INTO oauth_states (state_hash, session_binding, user_id, workspace_id, connection_id, reconnect, verifier_key_id, verifier, return_to, created_at, expires_at, used_at)
				VALUES ('state-2', 's', 'u', 'ws', 'conn-1', FALSE, $1, $2, '/', $3, $3, $3)`, []any{spent.KeyID, spent.Ciphertext, now}},
		} {
			if _, err := d.Write().ExecContext(ctx, q.sql, q.args...); err != nil {
				t.Fatalf("old schema: %v", err)
			}
		}
		if _, err := d.Migrate(ctx); err != nil {
			t.Fatalf("migrate to one vault: %v", err)
		}

		store := vault.NewStore(d, vault.NewKeyring(key))
		for _, c := range []struct {
			what, query, owner, want string
		}{
			{"connection credential", `SELECT secret_handle FROM connections WHERE id = 'conn-1'`, "conn-1", "cred"},
			{"model key", `SELECT key_handle FROM model_providers WHERE id = 'prov-1'`, "prov-1", "sk-model"},
			{"webhook secret", `SELECT secret_handle FROM webhook_endpoints WHERE workflow_id = 'wf-1'`, "wf-1", "whsec"},
			{"verifier in flight", `SELECT verifier_handle FROM oauth_states WHERE state_hash = 'state-1'`, "state-1", "verifier"},
		} {
			var handle string
			if err := d.Read().QueryRowContext(ctx, c.query).Scan(&handle); err != nil {
				t.Fatalf("%s: handle: %v", c.what, err)
			}
			got, err := store.Open(ctx, d.Read(), handle, c.owner)
			if err != nil || string(got) != c.want {
				t.Fatalf("%s after migration: got %q, %v; want %q", c.what, got, err, c.want)
			}
		}
		var n int
		if err := d.Read().QueryRowContext(ctx, `SELECT count(*) FROM credentials`).Scan(&n); err != nil || n != 4 {
			t.Fatalf("vault rows: got %d, %v; want 4 (the spent verifier dropped)", n, err)
		}

		next, _, err := vault.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		rot, err := vault.NewStore(d, vault.NewKeyring(key).WithCurrent(next)).Rotate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := map[vault.Kind]int{vault.KindConnection: 1, vault.KindModelKey: 1, vault.KindWebhookSecret: 1, vault.KindPKCEVerifier: 1}
		for k, w := range want {
			if rot.Resealed[k] != w {
				t.Fatalf("rotated %v, want %v", rot.Resealed, want)
			}
		}
	})
}

// Rotate re-encrypts what it can open and reports the rest, and NotCurrent
// counts what is left under old keys.
func TestRotateSkipsWhatItCannotOpen(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		old, _, _ := vault.GenerateKey()
		next, _, _ := vault.GenerateKey()
		store := vault.NewStore(d, vault.NewKeyring(old))
		good, err := store.Put(ctx, d.Write(), "", vault.KindWebhookSecret, "wf-1", []byte("a"))
		if err != nil {
			t.Fatal(err)
		}
		bad, err := store.Put(ctx, d.Write(), "", vault.KindModelKey, "prov-1", []byte("b"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.Write().ExecContext(ctx, `UPDATE credentials SET owner = 'prov-2' WHERE handle = $1`, bad); err != nil {
			t.Fatal(err)
		}
		rotating := vault.NewStore(d, vault.NewKeyring(old).WithCurrent(next))
		rot, err := rotating.Rotate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if rot.Total() != 1 || len(rot.Unopenable) != 1 || rot.Unopenable[0] != bad {
			t.Fatalf("rotation: resealed %v, unopenable %v; want 1 resealed, %s unopenable", rot.Resealed, rot.Unopenable, bad)
		}
		left, err := rotating.NotCurrent(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(left) != 1 || left[0] != (vault.Remaining{KeyID: old.ID, Kind: vault.KindModelKey, Count: 1}) {
			t.Fatalf("left under old keys: %+v; want one model key under %s", left, old.ID)
		}
		if got, err := vault.NewStore(d, vault.NewKeyring(next)).Open(ctx, d.Read(), good, "wf-1"); err != nil || string(got) != "a" {
			t.Fatalf("rotated value with the new key alone: %q, %v", got, err)
		}
		// Bound to its owner: another owner's id does not open it.
		if _, err := rotating.Open(ctx, d.Read(), good, "wf-2"); err == nil {
			t.Fatal("a value opened for another owner")
		}
	})
}
