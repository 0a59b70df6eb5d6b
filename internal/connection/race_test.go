package connection_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"taskjuice/internal/account"
	"taskjuice/internal/connection"
	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
	"taskjuice/internal/sandbox"
	"taskjuice/internal/vault"
)

// The race test runs this test binary again as separate processes: each
// opens the shared PostgreSQL database on its own and asks for a fresh token
// from many goroutines at once, as a busy TaskJuice process would.
const probeEnv = "TASKJUICE_TEST_TOKEN_PROBE"

func TestMain(m *testing.M) {
	if os.Getenv(probeEnv) != "" {
		if err := tokenProbe(); err != nil {
			fmt.Fprintln(os.Stderr, "probe:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// tokenProbe is one process: PROBE_CALLERS goroutines each need a fresh
// token for PROBE_CONNECTION; it prints the token each got, one per line.
func tokenProbe() error {
	ctx := context.Background()
	d, err := db.Open(ctx, os.Getenv("PROBE_DATABASE_URL"))
	if err != nil {
		return err
	}
	defer d.Close()
	key, err := vault.ParseKey(os.Getenv("PROBE_KEY"))
	if err != nil {
		return err
	}
	cfg := &oauth2.Config{ClientID: "taskjuice", Endpoint: oauth2.Endpoint{TokenURL: os.Getenv("PROBE_TOKEN_URL"), AuthStyle: oauth2.AuthStyleInParams}}
	r := connection.NewRefresher(connection.NewService(d, vault.NewKeyring(key)),
		func(context.Context, connection.Connection) (*oauth2.Config, error) { return cfg, nil },
		connection.RefresherOptions{Skew: 50 * time.Millisecond, Backoff: 5 * time.Millisecond, Lease: 5 * time.Second})
	var n int
	fmt.Sscan(os.Getenv("PROBE_CALLERS"), &n)
	id := os.Getenv("PROBE_CONNECTION")
	var wg sync.WaitGroup
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	var firstErr error
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, err := r.AccessToken(ctx, id)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			fmt.Fprintln(out, tok)
		}()
	}
	wg.Wait()
	return firstErr
}

// TestRefreshRaceAcrossProcesses: two processes on one PostgreSQL, 50
// concurrent callers each, one connection whose refresh tokens rotate. For
// every expiry the sandbox sees exactly one refresh, every caller gets the
// same fresh token, and the connection is never wrongly set to error.
//
// Tokens live an hour and the test expires the stored one before each
// round, so a process that starts late on a busy machine finds the renewed
// token still fresh, as it should, instead of one that lived a second.
func TestRefreshRaceAcrossProcesses(t *testing.T) {
	base := os.Getenv(dbtest.PostgresEnv)
	if base == "" {
		t.Skip(dbtest.PostgresEnv + " not set")
	}
	ctx := context.Background()
	dsn := dbtest.NewPostgresSchema(t, base)
	d, err := db.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	key, keyText, err := vault.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	svc := connection.NewService(d, vault.NewKeyring(key))
	accounts := account.NewService(d)
	a, _, err := accounts.CreateAccount(ctx, "Agency", account.NewUser{Email: "o@a.example", Password: "correct horse battery"})
	if err != nil {
		t.Fatal(err)
	}
	ws, err := accounts.CreateWorkspaceForAccount(ctx, a.ID, "Acme", "acme")
	if err != nil {
		t.Fatal(err)
	}

	// The sandbox, with a real grant obtained through its consent flow.
	var sb *sandbox.Provider
	sbHandler := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { sb.Handler().ServeHTTP(w, r) }))
	defer sbHandler.Close()
	sb, err = sandbox.New(sandbox.Options{BaseURL: sbHandler.URL, AccessTTL: time.Hour,
		Clients: []sandbox.Client{{ID: "taskjuice", RedirectURIs: []string{"http://127.0.0.1/callback"}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	cfg := &oauth2.Config{ClientID: "taskjuice", RedirectURL: "http://127.0.0.1/callback",
		Scopes:   []string{sandbox.ScopeChatWrite},
		Endpoint: oauth2.Endpoint{AuthURL: sbHandler.URL + "/oauth/authorize", TokenURL: sbHandler.URL + "/oauth/token", AuthStyle: oauth2.AuthStyleInParams}}
	verifier := oauth2.GenerateVerifier()
	cb, err := sandbox.Consent(ctx, nil, cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier)), "Race", true)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := cfg.Exchange(ctx, cb.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	c, err := svc.CreateWithCredential(ctx, ws, connection.New{AppKey: "sandbox-chat", Label: "Race", Status: connection.StatusActive},
		connection.Credential{OAuth: connection.FromOAuth2(tok)}, connection.System)
	if err != nil {
		t.Fatal(err)
	}

	refreshes := func() int {
		n := 0
		for _, v := range sb.Stats().Refreshes {
			n += v
		}
		return n
	}
	const rounds = 5
	for round := 1; round <= rounds; round++ {
		expireStoredToken(t, svc, c.ID)
		var wg sync.WaitGroup
		outs := make([]string, 2)
		for i := range outs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cmd := exec.Command(os.Args[0], "-test.run=^$")
				cmd.Env = append(os.Environ(), probeEnv+"=1", "PROBE_DATABASE_URL="+dsn, "PROBE_KEY="+strings.TrimSpace(keyText),
					"PROBE_TOKEN_URL="+cfg.Endpoint.TokenURL, "PROBE_CALLERS=50", "PROBE_CONNECTION="+c.ID)
				b, err := cmd.Output()
				if err != nil {
					t.Errorf("process %d: %v", i, err)
				}
				outs[i] = string(b)
			}()
		}
		wg.Wait()
		tokens := map[string]int{}
		for _, o := range outs {
			for _, line := range strings.Fields(o) {
				tokens[line]++
			}
		}
		if len(tokens) != 1 {
			t.Fatalf("round %d: callers got %d different tokens, want 1 (%v)", round, len(tokens), keys(tokens))
		}
		for _, n := range tokens {
			if n != 100 {
				t.Fatalf("round %d: %d callers got a token, want 100", round, n)
			}
		}
		if got := refreshes(); got != round {
			t.Fatalf("round %d: the sandbox counted %d refreshes in all, want %d (exactly one per expiry)", round, got, round)
		}
	}
	got, err := svc.Get(ctx, ws, c.ID)
	if err != nil || got.Status != connection.StatusActive {
		t.Fatalf("after the race: %s, %v; want active", got.Status, err)
	}
	if s, _ := svc.Signals(ctx, c.ID); len(s) != 0 {
		t.Fatalf("signals after the race: %+v", s)
	}
	if errs := sb.Stats().TokenErrors; len(errs) != 0 {
		t.Fatalf("token errors at the sandbox: %v (a refresh token was reused)", errs)
	}
}

func keys(m map[string]int) []string {
	var out []string
	for k := range m {
		out = append(out, k[:min(len(k), 8)])
	}
	return out
}

// expireStoredToken marks the connection's stored access token expired, as
// time would, keeping the real grant behind it.
func expireStoredToken(t *testing.T, svc *connection.Service, id string) {
	t.Helper()
	ctx := context.Background()
	raw, _, err := svc.Secret(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var cred connection.Credential
	if err := json.Unmarshal(raw, &cred); err != nil || cred.OAuth == nil {
		t.Fatalf("stored credential: %v", err)
	}
	cred.OAuth.Expiry = time.Now().Add(-time.Second)
	raw, _ = json.Marshal(cred)
	if _, err := svc.StoreSecret(ctx, id, raw); err != nil {
		t.Fatal(err)
	}
}
