package connection_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"taskjuice/internal/apperr"
	"taskjuice/internal/connection"
	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
)

// tokenServer is a token endpoint with rotating refresh tokens and faults
// on demand, for exercising the refresher's decisions.
type tokenServer struct {
	mu        sync.Mutex
	valid     map[string]bool // refresh tokens that still work
	n         int
	refreshes atomic.Int64
	faults    []int // HTTP statuses to answer with next (500, 429, or 200 for Slack-style {"ok":false,"error":"ratelimited"})
	revoked   bool
	ttl       time.Duration
	// beforeReject runs when a refresh is about to be rejected.
	beforeReject func()
	// clock, when set, stamps each successful refresh in times.
	clock func() time.Time
	times []time.Time
	// requests are the arrival times (real clock) of every request.
	requests []time.Time
	srv      *httptest.Server
}

func newTokenServer(t *testing.T) *tokenServer {
	ts := &tokenServer{valid: map[string]bool{"r0": true}, ttl: time.Hour}
	ts.srv = httptest.NewServer(http.HandlerFunc(ts.serve))
	t.Cleanup(ts.srv.Close)
	return ts
}

func (ts *tokenServer) serve(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	ts.mu.Lock()
	ts.requests = append(ts.requests, time.Now())
	if len(ts.faults) > 0 {
		code := ts.faults[0]
		ts.faults = ts.faults[1:]
		ts.mu.Unlock()
		if code == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "0")
		}
		if code == retryAfterOneSecond {
			w.Header().Set("Retry-After", "1")
			code = http.StatusTooManyRequests
		}
		if code == http.StatusOK {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"ok":false,"error":"ratelimited"}`))
			return
		}
		http.Error(w, "try later", code)
		return
	}
	rt := r.PostForm.Get("refresh_token")
	if ts.revoked || !ts.valid[rt] {
		hook := ts.beforeReject
		ts.mu.Unlock()
		if hook != nil {
			hook()
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"invalid_grant","error_description":"refresh token is invalid"}`))
		return
	}
	delete(ts.valid, rt)
	ts.n++
	next := fmt.Sprintf("r%d", ts.n)
	ts.valid[next] = true
	ttl := ts.ttl
	if ts.clock != nil {
		ts.times = append(ts.times, ts.clock())
	}
	ts.mu.Unlock()
	ts.refreshes.Add(1)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"access_token": fmt.Sprintf("a%d", ts.n), "refresh_token": next, "token_type": "Bearer", "expires_in": int(ttl.Seconds()),
	})
}

// retryAfterOneSecond as a fault answers 429 with Retry-After: 1.
const retryAfterOneSecond = 1429

func (ts *tokenServer) config() connection.OAuthConfigFunc {
	return func(context.Context, connection.Connection) (*oauth2.Config, error) {
		return &oauth2.Config{ClientID: "taskjuice", ClientSecret: "s", Endpoint: oauth2.Endpoint{TokenURL: ts.srv.URL, AuthStyle: oauth2.AuthStyleInHeader}}, nil
	}
}

func (f fixture) createOAuth(t *testing.T, expiry time.Time) connection.Connection {
	t.Helper()
	cred, _ := json.Marshal(connection.Credential{OAuth: &connection.OAuthToken{AccessToken: "a0", RefreshToken: "r0", TokenType: "Bearer", Expiry: expiry}})
	c, err := f.svc.Create(context.Background(), f.acme, connection.New{AppKey: "sandbox-chat", Label: "Chat", Status: connection.StatusActive, Secret: cred}, connection.System)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func fastOptions() connection.RefresherOptions {
	return connection.RefresherOptions{Backoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond, Lease: 2 * time.Second, Skew: 100 * time.Millisecond}
}

func signals(t *testing.T, f fixture, id string) []connection.Signal {
	t.Helper()
	s, err := f.svc.Signals(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestFreshTokenNeedsNoRefresh(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		ts := newTokenServer(t)
		c := f.createOAuth(t, time.Now().Add(time.Hour))
		r := connection.NewRefresher(f.svc, ts.config(), fastOptions())
		tok, err := r.AccessToken(context.Background(), c.ID)
		if err != nil || tok != "a0" {
			t.Fatalf("access token: got %q, %v; want a0", tok, err)
		}
		if n := ts.refreshes.Load(); n != 0 {
			t.Fatalf("refreshes: got %d, want 0", n)
		}
	})
}

func TestConcurrentCallersShareOneRefresh(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		ts := newTokenServer(t)
		c := f.createOAuth(t, time.Now().Add(-time.Minute))
		// Two refreshers stand for two processes sharing the database.
		rs := []*connection.Refresher{
			connection.NewRefresher(f.svc, ts.config(), fastOptions()),
			connection.NewRefresher(f.svc, ts.config(), fastOptions()),
		}
		var wg sync.WaitGroup
		tokens := make(chan string, 50)
		for i := range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tok, err := rs[i%2].AccessToken(context.Background(), c.ID)
				if err != nil {
					t.Errorf("caller %d: %v", i, err)
				}
				tokens <- tok
			}()
		}
		wg.Wait()
		close(tokens)
		for tok := range tokens {
			if tok != "a1" {
				t.Fatalf("a caller got %q, want the one refreshed token a1", tok)
			}
		}
		if n := ts.refreshes.Load(); n != 1 {
			t.Fatalf("refreshes: got %d, want exactly 1", n)
		}
		got, err := f.svc.Get(context.Background(), f.acme, c.ID)
		if err != nil || got.Status != connection.StatusActive || got.AccessExpiresAt == nil {
			t.Fatalf("after refresh: %+v, %v", got, err)
		}
		// The rotated refresh token was saved with the access token.
		raw, version, err := f.svc.Secret(context.Background(), c.ID)
		if err != nil || version != 2 {
			t.Fatalf("secret version: %d, %v; want 2", version, err)
		}
		var cred connection.Credential
		_ = json.Unmarshal(raw, &cred)
		if cred.OAuth.RefreshToken != "r1" || cred.OAuth.AccessToken != "a1" {
			t.Fatal("rotated refresh token not stored with the new access token")
		}
	})
}

func TestTransientFailuresAreRetried(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		ts := newTokenServer(t)
		ts.faults = []int{500, 429, 200, 503}
		c := f.createOAuth(t, time.Now().Add(-time.Minute))
		r := connection.NewRefresher(f.svc, ts.config(), fastOptions())
		tok, err := r.AccessToken(context.Background(), c.ID)
		if err != nil || tok != "a1" {
			t.Fatalf("after transient failures: got %q, %v; want a1", tok, err)
		}
		got, _ := f.svc.Get(context.Background(), f.acme, c.ID)
		if got.Status != connection.StatusActive {
			t.Fatalf("status: got %s, want active", got.Status)
		}
		if s := signals(t, f, c.ID); len(s) != 0 {
			t.Fatalf("signals after transient failures: got %d, want 0", len(s))
		}
	})
}

func TestTransientFailuresExhaustedStayActive(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		ts := newTokenServer(t)
		ts.faults = []int{500, 500, 500, 500, 500, 500, 500, 500}
		c := f.createOAuth(t, time.Now().Add(-time.Minute))
		r := connection.NewRefresher(f.svc, ts.config(), fastOptions())
		if _, err := r.AccessToken(context.Background(), c.ID); err == nil || errors.Is(err, connection.ErrNeedsReauth) {
			t.Fatalf("persistent 500s: got %v, want a transient error", err)
		}
		got, _ := f.svc.Get(context.Background(), f.acme, c.ID)
		if got.Status != connection.StatusActive || len(signals(t, f, c.ID)) != 0 {
			t.Fatalf("after persistent 500s: status %s, %d signals; want active and none", got.Status, len(signals(t, f, c.ID)))
		}
	})
}

func TestRejectedGrantMovesToErrorOnce(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		ts := newTokenServer(t)
		ts.revoked = true
		c := f.createOAuth(t, time.Now().Add(-time.Minute))
		rs := []*connection.Refresher{
			connection.NewRefresher(f.svc, ts.config(), fastOptions()),
			connection.NewRefresher(f.svc, ts.config(), fastOptions()),
		}
		var wg sync.WaitGroup
		for i := range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := rs[i%2].AccessToken(context.Background(), c.ID); !errors.Is(err, connection.ErrNeedsReauth) {
					t.Errorf("caller %d: got %v, want ErrNeedsReauth", i, err)
				}
			}()
		}
		wg.Wait()
		got, _ := f.svc.Get(context.Background(), f.acme, c.ID)
		if got.Status != connection.StatusError || got.StatusDescription != "Reconnection needed." {
			t.Fatalf("status: got %s (%q), want error", got.Status, got.StatusDescription)
		}
		s := signals(t, f, c.ID)
		if len(s) != 1 || s[0].Kind != connection.SignalNeedsReauth {
			t.Fatalf("signals: got %+v, want exactly one needs_reauth", s)
		}
		err := rs[0].Refresh(context.Background(), c.ID)
		if e, ok := apperr.As(err); !ok || apperr.Status(err) != 400 || e.Message != connection.MsgCannotRefresh {
			t.Fatalf("manual refresh of an error connection: got %v, want 400 %q", err, connection.MsgCannotRefresh)
		}
	})
}

func TestLostRaceIsNotARevocation(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		ts := newTokenServer(t)
		c := f.createOAuth(t, time.Now().Add(-time.Minute))
		// Another worker rotates the refresh token first: by the time our
		// request reaches the provider, r0 is spent and the new credential
		// is already stored.
		ts.mu.Lock()
		delete(ts.valid, "r0")
		ts.beforeReject = func() {
			cred, _ := json.Marshal(connection.Credential{OAuth: &connection.OAuthToken{AccessToken: "other", RefreshToken: "r9", Expiry: time.Now().Add(time.Hour)}})
			if _, err := f.svc.StoreSecret(context.Background(), c.ID, cred); err != nil {
				t.Error(err)
			}
		}
		ts.mu.Unlock()
		r := connection.NewRefresher(f.svc, ts.config(), fastOptions())
		// The caller whose token had expired gets the winner's token.
		if tok, err := r.AccessToken(context.Background(), c.ID); err != nil || tok != "other" {
			t.Fatalf("refresh that lost a race: got %q, %v; want the winner's token", tok, err)
		}
		got, _ := f.svc.Get(context.Background(), f.acme, c.ID)
		if got.Status != connection.StatusActive || len(signals(t, f, c.ID)) != 0 {
			t.Fatalf("after a lost race: status %s with %d signals; want active, none", got.Status, len(signals(t, f, c.ID)))
		}
		tok, err := r.AccessToken(context.Background(), c.ID)
		if err != nil || tok != "other" {
			t.Fatalf("token after lost race: got %q, %v; want the winner's", tok, err)
		}
	})
}
