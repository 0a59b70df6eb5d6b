package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
	"golang.org/x/oauth2"

	"taskjuice/internal/account"
	"taskjuice/internal/connection"
	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
	"taskjuice/internal/llm"
	"taskjuice/internal/sandbox"
	"taskjuice/internal/trigger"
	"taskjuice/internal/vault"
)

// hmacWorkflows reports an HMAC-signed webhook trigger for every workflow.
type hmacWorkflows struct{}

func (hmacWorkflows) ActiveTrigger(context.Context, string) (string, json.RawMessage, bool, error) {
	return trigger.KindWebhook, json.RawMessage(`{"auth":"hmac-sha256","header":"X-Signature"}`), true, nil
}

// countingStarter records one run per call.
type countingStarter struct{ n int }

func (s *countingStarter) StartRun(context.Context, string, json.RawMessage, string, string) (string, error) {
	s.n++
	return "run-1", nil
}

// Every kind of secret goes through rotate-key's one loop: after it, with
// the old key dropped, a connection's credential, a model provider's key and
// an HMAC webhook's secret all still work, and a verifier of a consent in
// flight is no longer under the old key either.
func TestRotateKeyEverySecret(t *testing.T) {
	engines := map[string]func(t *testing.T, dir string) string{
		"sqlite": func(t *testing.T, dir string) string { return filepath.Join(dir, "taskjuice.db") },
		"postgres": func(t *testing.T, dir string) string {
			base := os.Getenv(dbtest.PostgresEnv)
			if base == "" {
				t.Skip(dbtest.PostgresEnv + " not set")
			}
			return dbtest.NewPostgresSchema(t, base)
		},
	}
	for _, name := range []string{"sqlite", "postgres"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			dsn := engines[name](t, dir)
			ctx := context.Background()
			oldKey, oldText, err := vault.GenerateKey()
			must(t, err)
			newKey, newText, err := vault.GenerateKey()
			must(t, err)

			d, err := db.Open(ctx, dsn)
			must(t, err)
			defer d.Close()
			_, err = d.Migrate(ctx)
			must(t, err)
			oldRing := vault.NewKeyring(oldKey)
			accounts := account.NewService(d)
			a, u, err := accounts.CreateAccount(ctx, "Agency", account.NewUser{Email: "o@a.example", Password: "correct horse battery"})
			must(t, err)
			ws, err := accounts.CreateWorkspaceForAccount(ctx, a.ID, "Acme", "acme")
			must(t, err)

			// A connection's credential.
			conns := connection.NewService(d, oldRing)
			c, err := conns.Create(ctx, ws, connection.New{AppKey: "stripe", Label: "Stripe", Status: connection.StatusActive, Secret: []byte("sk_test_123")}, connection.System)
			must(t, err)
			// A consent in flight: its PKCE verifier is sealed too.
			cfg := &oauth2.Config{ClientID: "x", Endpoint: oauth2.Endpoint{AuthURL: "https://auth.example/authorize", TokenURL: "https://auth.example/token"}}
			_, _, err = conns.BeginConsent(ctx, cfg, connection.ConsentRequest{Workspace: ws, AppKey: "github", Label: "GitHub",
				Actor: connection.Actor{Kind: connection.ActorUser, UserID: u.ID}, SessionBinding: "session", ReturnTo: "/", OwnerKind: connection.OwnerWorkspace})
			must(t, err)
			// A model provider's key, checked by the sandbox's model API.
			var sb *sandbox.Provider
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { sb.Handler().ServeHTTP(w, r) }))
			defer srv.Close()
			sb, err = sandbox.New(sandbox.Options{BaseURL: srv.URL, Clients: []sandbox.Client{{ID: "taskjuice", RedirectURIs: []string{"http://127.0.0.1/callback"}}}})
			must(t, err)
			defer sb.Close()
			p, err := llm.NewService(d, oldRing, llm.Options{}).Create(ctx, ws.ID, llm.ProviderInput{Name: "Sandbox", BaseURL: sb.Endpoints().Model,
				APIKey: sb.ModelKey(), Models: []llm.ModelInput{{Model: sandbox.ModelSmall, InputUSDPerMTok: "1", OutputUSDPerMTok: "1", MaxOutputTokens: 100}}})
			must(t, err)
			// A webhook's HMAC secret.
			wfID := db.NewID()
			_, err = d.Write().ExecContext(ctx, `INSERT INTO workflows (id, workspace_id, name, created_at, updated_at) VALUES ($1, $2, 'Flow', $3, $3)`, wfID, ws.ID, db.Now())
			must(t, err)
			hooks := trigger.New(d, oldRing, &countingStarter{}, hmacWorkflows{}, trigger.Options{})
			secret, err := hooks.GenerateSecret(ctx, wfID)
			must(t, err)
			token, err := hooks.Endpoint(ctx, wfID)
			must(t, err)
			// A staff member's MFA secret.
			accounts.UseVault(oldRing)
			owner, err := accounts.PrincipalByEmail(ctx, "o@a.example")
			must(t, err)
			setup, err := accounts.BeginMFASetup(ctx, owner)
			must(t, err)
			enrollCode, err := totp.GenerateCode(setup.Key, time.Now())
			must(t, err)
			_, err = accounts.EnableMFA(ctx, owner, enrollCode)
			must(t, err)
			d.Close()

			getenv := func(k string) string {
				return map[string]string{"TASKJUICE_SECRET_KEY": newText, "TASKJUICE_OLD_SECRET_KEYS": oldText}[k]
			}
			args := []string{"rotate-key", "--data-dir", dir}
			if name == "postgres" {
				args = append(args, "--database-url", dsn)
			}
			var out, errb bytes.Buffer
			if err := run(ctx, args, env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: getenv}); err != nil {
				t.Fatalf("rotate-key: %v\n%s%s", err, out.String(), errb.String())
			}
			for _, want := range []string{"re-encrypted 5 secrets", "1 connection credentials", "1 model provider keys", "1 webhook secrets",
				"1 OAuth verifiers in flight", "1 MFA secrets", "TASKJUICE_OLD_SECRET_KEYS is no longer needed"} {
				if !strings.Contains(out.String(), want) {
					t.Fatalf("rotate-key output %q lacks %q", out.String(), want)
				}
			}

			// The old key dropped: only the new one is loaded.
			d, err = db.Open(ctx, dsn)
			must(t, err)
			defer d.Close()
			newRing := vault.NewKeyring(newKey)
			got, _, err := connection.NewService(d, newRing).Secret(ctx, c.ID)
			if err != nil || string(got) != "sk_test_123" {
				t.Fatalf("connection credential after rotation: %q, %v; want sk_test_123", got, err)
			}
			mc, err := llm.NewService(d, newRing, llm.Options{}).Client(ctx, ws.ID, p.ID)
			if err != nil {
				t.Fatalf("model key after rotation: %v", err)
			}
			if _, err := mc.Complete(ctx, llm.Request{Model: sandbox.ModelSmall, Messages: []llm.Message{{Role: "user", Content: "hi"}}}); err != nil {
				t.Fatalf("model call after rotation: %v", err)
			}
			starter := &countingStarter{}
			mux := http.NewServeMux()
			mux.Handle("/webhooks/{token}", trigger.New(d, newRing, starter, hmacWorkflows{}, trigger.Options{}))
			body := `{"event":"paid"}`
			m := hmac.New(sha256.New, []byte(secret))
			m.Write([]byte(body))
			req := httptest.NewRequest("POST", "/webhooks/"+token, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Signature", "sha256="+hex.EncodeToString(m.Sum(nil)))
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, req)
			if rec.Code != http.StatusAccepted || starter.n != 1 {
				t.Fatalf("signed webhook after rotation: got %d %s (%d runs), want 202 and one run", rec.Code, rec.Body.String(), starter.n)
			}
			mfa := account.NewService(d)
			mfa.UseVault(newRing)
			step, err := mfa.PasswordStep(ctx, "o@a.example", "correct horse battery", "127.0.0.1", "")
			must(t, err)
			nextCode, err := totp.GenerateCode(setup.Key, time.Now().Add(30*time.Second))
			must(t, err)
			if _, _, err := mfa.CompleteMFA(ctx, step.MFAToken, nextCode, "127.0.0.1", ""); err != nil {
				t.Fatalf("MFA sign-in after rotation: %v", err)
			}
			left, err := vault.NewStore(d, newRing).NotCurrent(ctx)
			if err != nil || len(left) != 0 {
				t.Fatalf("still under old keys: %v, %v; want none", left, err)
			}
		})
	}
}

// While anything is still sealed under an old key after the loop (here a
// value no key opens for its owner), rotate-key says so, fails, and does not
// call the old key unneeded.
func TestRotateKeyKeepsNeededKey(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	oldKey, oldText, err := vault.GenerateKey()
	must(t, err)
	_, newText, err := vault.GenerateKey()
	must(t, err)
	d, err := db.Open(ctx, filepath.Join(dir, "taskjuice.db"))
	must(t, err)
	_, err = d.Migrate(ctx)
	must(t, err)
	store := vault.NewStore(d, vault.NewKeyring(oldKey))
	h, err := store.Put(ctx, d.Write(), "", vault.KindWebhookSecret, "wf-1", []byte("s"))
	must(t, err)
	// Moved onto another owner: no key opens it for the owner it names.
	_, err = d.Write().ExecContext(ctx, `UPDATE credentials SET owner = 'wf-2' WHERE handle = $1`, h)
	must(t, err)
	d.Close()

	getenv := func(k string) string {
		return map[string]string{"TASKJUICE_SECRET_KEY": newText, "TASKJUICE_OLD_SECRET_KEYS": oldText}[k]
	}
	var out, errb bytes.Buffer
	err = run(ctx, []string{"rotate-key", "--data-dir", dir}, env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: getenv})
	if err == nil {
		t.Fatalf("rotate-key with a secret left under the old key: got nil error; output %q", out.String())
	}
	if s := out.String(); !strings.Contains(s, "still sealed under old key "+oldKey.ID+": 1 secrets (1 webhook secrets)") || strings.Contains(s, "no longer needed") {
		t.Fatalf("rotate-key output %q: want the old key named as still needed, and never called unneeded", s)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
