package connection_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"taskjuice/internal/connection"
	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{now: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// lockedBuffer collects log output written from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitFor polls cond until it holds, failing the test at the deadline.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %s waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func dueOf(t *testing.T, f fixture, id string) time.Time {
	t.Helper()
	var due time.Time
	if err := f.db.Read().QueryRowContext(context.Background(), `SELECT refresh_due_at FROM connections WHERE id = $1`, id).Scan(&due); err != nil {
		t.Fatalf("read due time: %v", err)
	}
	return due.UTC()
}

// passEvery is the pause between the server's refresher passes.
const passEvery = 5 * time.Second

// TestRefreshScheduleFitsTokenLifetime simulates a day of refresher passes,
// one every 5 seconds on an injected clock, for apps whose access tokens
// live 60 seconds, 5 minutes and 1 hour: each is renewed about once per
// lifetime (within 2x of a day divided by the lifetime), and never before
// it is half-way through its life.
func TestRefreshScheduleFitsTokenLifetime(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		ctx := context.Background()
		for _, life := range []time.Duration{time.Minute, 5 * time.Minute, time.Hour} {
			t.Run(life.String(), func(t *testing.T) {
				start := time.Now().UTC().Truncate(time.Second)
				clock := newFakeClock(start)
				ts := newTokenServer(t)
				ts.ttl, ts.clock = life, clock.Now
				opts := fastOptions()
				opts.Skew, opts.Now = 30*time.Second, clock.Now
				r := connection.NewRefresher(f.svc, ts.config(), opts)
				c := f.createOAuth(t, start.Add(-time.Second))
				t.Cleanup(func() {
					// Off the schedule, so the next lifetime's passes see only theirs.
					if _, err := f.svc.Transition(ctx, c.ID, connection.StatusRevoked, "done", connection.System, nil); err != nil {
						t.Error(err)
					}
				})
				// The first renewal (on demand) sets the schedule.
				if _, err := r.AccessToken(ctx, c.ID); err != nil {
					t.Fatal(err)
				}
				end := start.Add(24 * time.Hour)
				want := int(24 * time.Hour / life)
				for {
					if n := int(ts.refreshes.Load()) - 1; n > 2*want {
						t.Fatalf("%s tokens: %d refreshes by %s of the simulated day, want within 2x of %d a day", life, n, clock.Now().Sub(start), want)
					}
					due := dueOf(t, f, c.ID)
					// The first pass at or after the due time.
					next := start.Add((due.Sub(start) + passEvery - 1) / passEvery * passEvery)
					if next.After(end) {
						break
					}
					if before := next.Add(-passEvery); before.After(clock.Now()) {
						clock.Set(before)
						if n, err := r.Pass(ctx); err != nil || n != 0 {
							t.Fatalf("pass at %s, before the due time %s: refreshed %d, %v; want 0", before.Sub(start), due.Sub(start), n, err)
						}
					}
					clock.Set(next)
					if n, err := r.Pass(ctx); err != nil || n != 1 {
						t.Fatalf("pass at %s, due since %s: refreshed %d, %v; want 1", next.Sub(start), due.Sub(start), n, err)
					}
				}
				ts.mu.Lock()
				times := append([]time.Time(nil), ts.times...)
				ts.mu.Unlock()
				for i := 1; i < len(times); i++ {
					if gap := times[i].Sub(times[i-1]); gap < life/2 {
						t.Fatalf("refresh %d came %s after the previous one, before the %s token was half-way through its life", i, gap, life)
					}
				}
				got := len(times) - 1 // the passes' refreshes
				t.Logf("%s tokens: %d refreshes in a simulated day (a day / lifetime = %d)", life, got, want)
				if got < want/2 || got > 2*want {
					t.Fatalf("%s tokens: got %d refreshes in a day, want within 2x of %d", life, got, want)
				}
			})
		}
	})
}

// TestShortLivedTokenWarnsOnce: an app whose new tokens are stale on
// arrival (they live less than the refresh margin) is reported once, not on
// every refresh, and an app with healthy lifetimes is not reported.
func TestShortLivedTokenWarnsOnce(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		ctx := context.Background()
		ts := newTokenServer(t)
		ts.ttl = 10 * time.Second
		var logs lockedBuffer
		opts := fastOptions()
		opts.Skew = 30 * time.Second
		opts.Log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
		r := connection.NewRefresher(f.svc, ts.config(), opts)
		short := f.createOAuth(t, time.Now().Add(time.Hour))
		for i := range 3 {
			if err := r.Refresh(ctx, short.ID); err != nil {
				t.Fatalf("refresh %d: %v\n%s", i, err, logs.String())
			}
		}
		if n := strings.Count(logs.String(), "already due"); n != 1 {
			t.Fatalf("warnings for an app with 10-second tokens after 3 refreshes: got %d, want 1\n%s", n, logs.String())
		}
		if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), short.ID) {
			t.Fatalf("the warning does not name the connection at level WARN:\n%s", logs.String())
		}
		ts.mu.Lock()
		ts.ttl, ts.valid["r0"] = time.Hour, true // the healthy connection's grant
		ts.mu.Unlock()
		healthy := f.createOAuth(t, time.Now().Add(time.Hour))
		if err := r.Refresh(ctx, healthy.ID); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(logs.String(), healthy.ID) {
			t.Fatalf("a refresh to a 1-hour token was reported:\n%s", logs.String())
		}
	})
}

// TestPassRefreshesAheadOfExpiry: on an injected clock, a pass renews a
// token only once it is due (a quarter of its 2-minute life before expiry,
// never before half-way), and leaves a connection that is not due alone.
func TestPassRefreshesAheadOfExpiry(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		ctx := context.Background()
		clock := newFakeClock(time.Now().UTC())
		ts := newTokenServer(t)
		ts.ttl = 2 * time.Minute
		opts := fastOptions()
		opts.Now = clock.Now
		r := connection.NewRefresher(f.svc, ts.config(), opts)
		idle := f.createOAuth(t, clock.Now().Add(time.Hour))
		c := f.createOAuth(t, clock.Now().Add(-time.Minute))
		if _, err := r.AccessToken(ctx, c.ID); err != nil {
			t.Fatal(err)
		}
		issued := clock.Now()
		if n, err := r.Pass(ctx); err != nil || n != 0 {
			t.Fatalf("pass right after a refresh: refreshed %d, %v; want 0", n, err)
		}
		clock.Set(issued.Add(time.Minute)) // half-way: not due yet
		if n, err := r.Pass(ctx); err != nil || n != 0 {
			t.Fatalf("pass half-way through the token's life: refreshed %d, %v; want 0", n, err)
		}
		if tok, err := r.AccessToken(ctx, c.ID); err != nil || tok != "a1" {
			t.Fatalf("token half-way through its life: got %q, %v; want a1 as it is", tok, err)
		}
		clock.Set(issued.Add(2*time.Minute - time.Second)) // in the lead window, before expiry
		if n, err := r.Pass(ctx); err != nil || n != 1 {
			t.Fatalf("pass in the lead window: refreshed %d, %v; want 1", n, err)
		}
		if tok, err := r.AccessToken(ctx, c.ID); err != nil || tok != "a2" {
			t.Fatalf("token after ahead-of-expiry refresh: got %q, %v; want a2", tok, err)
		}
		if tok, _ := r.AccessToken(ctx, idle.ID); tok != "a0" {
			t.Fatalf("a connection that was not due was refreshed: %q", tok)
		}
		if got := ts.refreshes.Load(); got != 2 {
			t.Fatalf("refreshes: got %d, want 2", got)
		}
	})
}

// TestRetryAfterHoldsEveryProcess: when the app answers 429 with
// Retry-After, the process that asked keeps the refresh; another process
// asking meanwhile waits for its result instead of calling the app before
// the time it gave, and both end with the one new token.
func TestRetryAfterHoldsEveryProcess(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		ctx := context.Background()
		ts := newTokenServer(t)
		ts.faults = []int{retryAfterOneSecond}
		c := f.createOAuth(t, time.Now().Add(time.Hour))
		opts := fastOptions()
		opts.MaxBackoff, opts.Lease = 5*time.Second, 20*time.Second
		r1 := connection.NewRefresher(f.svc, ts.config(), opts)
		r2 := connection.NewRefresher(f.svc, ts.config(), opts)
		errs := make(chan error, 2)
		go func() { errs <- r1.Refresh(ctx, c.ID) }()
		waitFor(t, 20*time.Second, "the app's 429", func() bool {
			ts.mu.Lock()
			defer ts.mu.Unlock()
			return len(ts.requests) == 1
		})
		go func() { errs <- r2.Refresh(ctx, c.ID) }()
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatalf("refresh: %v", err)
			}
		}
		ts.mu.Lock()
		reqs := append([]time.Time(nil), ts.requests...)
		ts.mu.Unlock()
		if len(reqs) != 2 || ts.refreshes.Load() != 1 {
			t.Fatalf("token requests %d with %d refreshes; want the 429 and one refresh", len(reqs), ts.refreshes.Load())
		}
		if gap := reqs[1].Sub(reqs[0]); gap < time.Second {
			t.Fatalf("the app was called again %s after asking for 1s", gap)
		}
		for _, r := range []*connection.Refresher{r1, r2} {
			if tok, err := r.AccessToken(ctx, c.ID); err != nil || tok != "a1" {
				t.Fatalf("token after the refresh: got %q, %v; want a1", tok, err)
			}
		}
	})
}

// TestRejectedTokenRenewedOnce: the app rejects a token that another process
// renewed while the request was on its way; the 401 retry uses that renewal
// instead of starting another.
func TestRejectedTokenRenewedOnce(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		ctx := context.Background()
		ts := newTokenServer(t)
		cred, _ := json.Marshal(connection.Credential{OAuth: &connection.OAuthToken{AccessToken: "a0", RefreshToken: "r0", Expiry: time.Now().Add(time.Hour)}})
		c, err := f.svc.Create(ctx, f.acme, connection.New{AppKey: "slack", Label: "Slack", Status: connection.StatusActive, Secret: cred}, connection.System)
		if err != nil {
			t.Fatal(err)
		}
		r1 := connection.NewRefresher(f.svc, ts.config(), fastOptions())
		r2 := connection.NewRefresher(f.svc, ts.config(), fastOptions())
		var renewed atomic.Bool
		var last atomic.Value
		app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			last.Store(r.Header.Get("Authorization"))
			if r.Header.Get("Authorization") == "Bearer a0" {
				if renewed.CompareAndSwap(false, true) {
					// Another process renews (and the app revokes a0).
					if err := r2.Refresh(ctx, c.ID); err != nil {
						t.Error(err)
					}
				}
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			_, _ = w.Write([]byte(`{"ok":true}`))
		}))
		defer app.Close()
		client := connection.NewAppClient(f.svc, r1, testCatalog(t), privateOK)
		widen(t, f, c.ID, app.URL)
		res, err := client.Do(ctx, c.ID, get(app.URL+"/api/chat.postMessage"))
		if err != nil || res.Status != 200 {
			t.Fatalf("call: %d, %v; want 200", res.Status, err)
		}
		if n := ts.refreshes.Load(); n != 1 || last.Load() != "Bearer a1" {
			t.Fatalf("refreshes %d, retried with %v; want the other process's one refresh, a1", n, last.Load())
		}
	})
}
