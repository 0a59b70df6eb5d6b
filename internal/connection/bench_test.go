package connection_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"taskjuice/internal/connection"
	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
)

// anyRefreshServer accepts every refresh token once and counts how often
// each was spent.
type anyRefreshServer struct {
	mu    sync.Mutex
	spent map[string]int
	srv   *httptest.Server
}

func newAnyRefreshServer(t *testing.T) *anyRefreshServer {
	s := &anyRefreshServer{spent: map[string]int{}}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		rt := r.PostForm.Get("refresh_token")
		s.mu.Lock()
		s.spent[rt]++
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"access_token": "new-" + rt, "refresh_token": "next-" + rt, "token_type": "Bearer", "expires_in": 3600,
		})
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *anyRefreshServer) config() connection.OAuthConfigFunc {
	return func(context.Context, connection.Connection) (*oauth2.Config, error) {
		return &oauth2.Config{ClientID: "taskjuice", Endpoint: oauth2.Endpoint{TokenURL: s.srv.URL, AuthStyle: oauth2.AuthStyleInParams}}, nil
	}
}

func (s *anyRefreshServer) spentTokens() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for k, v := range s.spent {
		out[k] = v
	}
	return out
}

func benchCred(i int) connection.Credential {
	return connection.Credential{OAuth: &connection.OAuthToken{
		AccessToken: fmt.Sprintf("a%d", i), RefreshToken: fmt.Sprintf("r%d", i), TokenType: "Bearer",
		Expiry: time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC),
	}}
}

func TestSeedForBench(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		f := setup(t, d)
		// More than one batch, the last one partial.
		const n = 2345
		later := time.Now().Add(24 * time.Hour)
		ids, err := f.svc.SeedForBench(ctx, f.acme, "sandbox-chat", n, benchCred, &later)
		if err != nil {
			t.Fatalf("seed: %v", err)
		}
		if len(ids) != n {
			t.Fatalf("ids: got %d, want %d", len(ids), n)
		}
		if u := len(slices.Compact(slices.Sorted(slices.Values(ids)))); u != n {
			t.Fatalf("distinct ids: got %d, want %d", u, n)
		}
		list, err := f.svc.List(ctx, f.acme, connection.StatusActive)
		if err != nil || len(list) != n {
			t.Fatalf("active connections: got %d, %v; want %d", len(list), err, n)
		}
		for _, i := range []int{0, 999, 1000, n - 1} {
			raw, version, err := f.svc.Secret(ctx, ids[i])
			if err != nil {
				t.Fatalf("secret of connection %d: %v", i, err)
			}
			var got connection.Credential
			if err := json.Unmarshal(raw, &got); err != nil {
				t.Fatal(err)
			}
			if want := benchCred(i); got.OAuth == nil || got.OAuth.RefreshToken != want.OAuth.RefreshToken || !got.OAuth.Expiry.Equal(want.OAuth.Expiry) {
				t.Fatalf("credential of connection %d: got %+v, want refresh token %s", i, got.OAuth, want.OAuth.RefreshToken)
			}
			if version != 1 {
				t.Fatalf("credential version of connection %d: got %d, want 1", i, version)
			}
			c, err := f.svc.Get(ctx, f.acme, ids[i])
			if err != nil {
				t.Fatal(err)
			}
			if c.Label != fmt.Sprintf("Bench %d", i+1) || c.AppKey != "sandbox-chat" || c.AccessExpiresAt == nil || !c.AccessExpiresAt.Equal(benchCred(i).OAuth.Expiry) {
				t.Fatalf("connection %d: got label %q, app %q, expires %v", i, c.Label, c.AppKey, c.AccessExpiresAt)
			}
			h, err := f.svc.History(ctx, f.acme, ids[i])
			if err != nil || len(h) != 1 || h[0].To != connection.StatusActive || h[0].Reason != "created" {
				t.Fatalf("history of connection %d: got %+v, %v; want one created entry", i, h, err)
			}
		}
		// Another workspace sees none of them.
		if other, err := f.svc.List(ctx, f.beta, ""); err != nil || len(other) != 0 {
			t.Fatalf("beta's connections: got %d, %v; want 0", len(other), err)
		}
	})
}

func TestSeedForBenchEdges(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		f := setup(t, d)
		ids, err := f.svc.SeedForBench(ctx, f.acme, "sandbox-chat", 0, benchCred, nil)
		if err != nil || len(ids) != 0 {
			t.Fatalf("seed 0: got %d ids, %v; want none", len(ids), err)
		}
		if _, err := f.svc.SeedForBench(ctx, f.acme, "sandbox-chat", -1, benchCred, nil); err == nil {
			t.Fatal("seed -1: got no error")
		}
	})
}

func TestMarkDueDrivesThePass(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		f := setup(t, d)
		ts := newAnyRefreshServer(t)
		later := time.Now().Add(24 * time.Hour)
		ids, err := f.svc.SeedForBench(ctx, f.acme, "sandbox-chat", 300, benchCred, &later)
		if err != nil {
			t.Fatal(err)
		}
		r := connection.NewRefresher(f.svc, ts.config(), fastOptions())
		if n, err := r.Pass(ctx); err != nil || n != 0 {
			t.Fatalf("pass with nothing due: got %d, %v; want 0", n, err)
		}
		if spent := ts.spentTokens(); len(spent) != 0 {
			t.Fatalf("refreshes with nothing due: got %v, want none", spent)
		}

		broken := f.create(t, "Broken", connection.StatusError)
		due := append(slices.Clone(ids[:7]), ids[150], broken.ID)
		n, err := f.svc.MarkDue(ctx, due, time.Now().Add(-time.Second))
		if err != nil || n != 8 {
			t.Fatalf("mark due: got %d, %v; want 8 (the connection in error is not scheduled)", n, err)
		}
		if n, err := r.Pass(ctx); err != nil || n != 8 {
			t.Fatalf("pass: got %d, %v; want 8", n, err)
		}
		spent := ts.spentTokens()
		if len(spent) != 8 {
			t.Fatalf("refreshed: got %d tokens (%v), want 8", len(spent), spent)
		}
		for _, i := range []int{0, 1, 2, 3, 4, 5, 6, 150} {
			if got := spent[fmt.Sprintf("r%d", i)]; got != 1 {
				t.Fatalf("refreshes of connection %d: got %d, want 1", i, got)
			}
		}
		tok, err := r.AccessToken(ctx, ids[150])
		if err != nil || !strings.HasPrefix(tok, "new-") {
			t.Fatalf("access token after the pass: got %q, %v; want the refreshed one", tok, err)
		}
		// Refreshed connections are scheduled again ahead of their new
		// expiry, so the next pass has nothing to do.
		if n, err := r.Pass(ctx); err != nil || n != 0 {
			t.Fatalf("second pass: got %d, %v; want 0", n, err)
		}
	})
}
