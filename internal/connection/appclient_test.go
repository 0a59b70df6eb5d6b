package connection_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"taskjuice/internal/catalog"
	"taskjuice/internal/connection"
	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
	"taskjuice/internal/egress"
)

func testCatalog(t *testing.T) *catalog.Catalog {
	t.Helper()
	env := map[string]string{"TASKJUICE_APP_SLACK_CLIENT_ID": "id", "TASKJUICE_APP_SLACK_CLIENT_SECRET": "secret"}
	cat, err := catalog.Load(catalog.Options{Getenv: func(k string) string { return env[k] }})
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

// privateOK lets tests reach their httptest servers on loopback, as the
// operator's --http-allow-private does.
var privateOK = egress.Client(egress.Policy{AllowPrivate: true}, 30*time.Second)

// widen adds a test server's origin to the connection's allowed domains, as
// an admin does on its page: the apps' real hosts are not reachable here.
func widen(t *testing.T, f fixture, connID string, urls ...string) {
	t.Helper()
	actor := connection.Actor{Kind: connection.ActorUser, UserID: f.owner.User.ID}
	if _, err := f.svc.SetAllowedDomains(context.Background(), f.acme, connID, urls, actor); err != nil {
		t.Fatalf("widen %v: %v", urls, err)
	}
}

func get(url string) func(ctx context.Context) (*http.Request, error) {
	return func(ctx context.Context) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, "GET", url, nil)
	}
}

// slackAt is the catalog with a copy of the built-in Slack definition
// (same errors convention) whose API is at base, under the key
// "slack-local", given as an --apps-file would.
func slackAt(t *testing.T, base string) *catalog.Catalog {
	t.Helper()
	raw, err := os.ReadFile("../catalog/apps/slack.json")
	if err != nil {
		t.Fatal(err)
	}
	var def map[string]any
	if err := json.Unmarshal([]byte(strings.ReplaceAll(string(raw), "https://slack.com", base)), &def); err != nil {
		t.Fatal(err)
	}
	def["key"], def["clientId"] = "slack-local", "id"
	file := filepath.Join(t.TempDir(), "apps.json")
	b, _ := json.Marshal([]any{def})
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cat, err := catalog.Load(catalog.Options{GenericAppsFile: file, Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

// A Slack-style app answers 200 with {"ok":false,"error":"invalid_auth"}:
// the client renews the token once, and when the app still refuses it, the
// connection needs reauthorization. The same answer from a host merely
// added to the connection is not Slack's to give: it passes through.
func TestAppClientDeadCredentialInA200Body(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		ts := newTokenServer(t)
		var calls atomic.Int64
		var sawAuth atomic.Value
		slack := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			sawAuth.Store(r.Header.Get("Authorization"))
			_, _ = w.Write([]byte(`{"ok":false,"error":"invalid_auth"}`))
		}))
		defer slack.Close()
		cred, _ := json.Marshal(connection.Credential{OAuth: &connection.OAuthToken{AccessToken: "a0", RefreshToken: "r0", Expiry: time.Now().Add(time.Hour)}})
		c, err := f.svc.Create(context.Background(), f.acme, connection.New{AppKey: "slack-local", Label: "Slack", Status: connection.StatusActive, Secret: cred}, connection.System)
		if err != nil {
			t.Fatal(err)
		}
		r := connection.NewRefresher(f.svc, ts.config(), fastOptions())

		// Through a host added to the connection: an ordinary answer.
		other := slackAt(t, "https://slack.example")
		widen(t, f, c.ID, slack.URL)
		res, err := connection.NewAppClient(f.svc, r, other, privateOK).Do(context.Background(), c.ID, get(slack.URL+"/api/chat.postMessage"))
		if err != nil || res.Status != http.StatusOK || res.Failure != nil || calls.Load() != 1 || ts.refreshes.Load() != 0 {
			t.Fatalf("from an added host: %v, status %d, failure %+v after %d calls, %d refreshes; want the answer as it is, 1 call, no refresh",
				err, res.Status, res.Failure, calls.Load(), ts.refreshes.Load())
		}
		calls.Store(0)

		client := connection.NewAppClient(f.svc, r, slackAt(t, slack.URL), privateOK)
		_, err = client.Do(context.Background(), c.ID, get(slack.URL+"/api/chat.postMessage"))
		if !errors.Is(err, connection.ErrNeedsReauth) {
			t.Fatalf("dead credential: got %v, want ErrNeedsReauth", err)
		}
		if calls.Load() != 2 || ts.refreshes.Load() != 1 || sawAuth.Load() != "Bearer a1" {
			t.Fatalf("calls %d, refreshes %d, last auth %v; want 2 calls around one refresh, retried with the new token", calls.Load(), ts.refreshes.Load(), sawAuth.Load())
		}
		got, _ := f.svc.Get(context.Background(), f.acme, c.ID)
		if got.Status != connection.StatusError || !strings.Contains(got.StatusReason, "invalid_auth") {
			t.Fatalf("status: %s (%s), want error naming invalid_auth", got.Status, got.StatusReason)
		}
		if s := signals(t, f, c.ID); len(s) != 1 {
			t.Fatalf("signals: %d, want 1", len(s))
		}
		// Held from now on, without calling the app.
		if _, err := client.Do(context.Background(), c.ID, get(slack.URL)); !errors.Is(err, connection.ErrNeedsReauth) || calls.Load() != 2 {
			t.Fatalf("call on a broken connection: %v after %d calls", err, calls.Load())
		}
	})
}

// A 401 renews the token once and succeeds when the new token works; a
// 200 that is not an auth failure passes through.
func TestAppClientRenewsOn401(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		ts := newTokenServer(t)
		api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer a1" {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			_, _ = w.Write([]byte(`{"ok":true}`))
		}))
		defer api.Close()
		cred, _ := json.Marshal(connection.Credential{OAuth: &connection.OAuthToken{AccessToken: "a0", RefreshToken: "r0", Expiry: time.Now().Add(time.Hour)}})
		c, err := f.svc.Create(context.Background(), f.acme, connection.New{AppKey: "slack", Label: "Slack", Status: connection.StatusActive, Secret: cred}, connection.System)
		if err != nil {
			t.Fatal(err)
		}
		client := connection.NewAppClient(f.svc, connection.NewRefresher(f.svc, ts.config(), fastOptions()), testCatalog(t), privateOK)
		widen(t, f, c.ID, api.URL)
		res, err := client.Do(context.Background(), c.ID, get(api.URL))
		if err != nil || res.Status != 200 || string(res.Body) != `{"ok":true}` {
			t.Fatalf("after renewal: %d %s, %v", res.Status, res.Body, err)
		}
		if got, _ := f.svc.Get(context.Background(), f.acme, c.ID); got.Status != connection.StatusActive {
			t.Fatalf("status: %s, want active", got.Status)
		}
	})
}

// An API key the app rejects cannot be renewed: the connection needs a new
// key at once.
func TestAppClientRejectedAPIKey(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		var auth atomic.Value
		api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			auth.Store(r.Header.Get("Authorization"))
			w.WriteHeader(http.StatusUnauthorized)
		}))
		defer api.Close()
		c, err := f.svc.CreateWithCredential(context.Background(), f.acme, connection.New{AppKey: "stripe", Label: "Stripe", Status: connection.StatusActive},
			connection.Credential{APIKey: "sk_test_abc", Fields: map[string]string{"apiKey": "sk_test_abc"}}, connection.System)
		if err != nil {
			t.Fatal(err)
		}
		client := connection.NewAppClient(f.svc, connection.NewRefresher(f.svc, nil, fastOptions()), testCatalog(t), privateOK)
		widen(t, f, c.ID, api.URL)
		if _, err := client.Do(context.Background(), c.ID, get(api.URL)); !errors.Is(err, connection.ErrNeedsReauth) {
			t.Fatalf("rejected key: got %v, want ErrNeedsReauth", err)
		}
		if auth.Load() != "Bearer sk_test_abc" {
			t.Fatalf("key sent as %v", auth.Load())
		}
		if got, _ := f.svc.Get(context.Background(), f.acme, c.ID); got.Status != connection.StatusError {
			t.Fatalf("status: %s, want error", got.Status)
		}
	})
}
