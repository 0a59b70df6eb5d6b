package trigger_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"taskjuice/internal/account"
	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
	"taskjuice/internal/engine"
	"taskjuice/internal/trigger"
	"taskjuice/internal/vault"
	"taskjuice/internal/workflow"
)

// replayFixture is a workflow published with a webhook trigger, served by
// the real engine, on a settable clock.
type replayFixture struct {
	t         *testing.T
	d         *db.DB
	mux       *http.ServeMux
	hooks     *trigger.Webhooks
	secret    string
	token     string
	wf        string
	mu        sync.Mutex
	now       time.Time
	ctx       context.Context
	published bool
}

func (f *replayFixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *replayFixture) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
}

func newReplayFixture(t *testing.T, d *db.DB, cfg string) *replayFixture {
	t.Helper()
	ctx := context.Background()
	f := &replayFixture{t: t, d: d, ctx: ctx, now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	accounts := account.NewService(d)
	a, _, err := accounts.CreateAccount(ctx, "Agency", account.NewUser{Email: "o@a.example", Password: "correct horse battery"})
	if err != nil {
		t.Fatal(err)
	}
	ws, err := accounts.CreateWorkspaceForAccount(ctx, a.ID, "Acme", "acme")
	if err != nil {
		t.Fatal(err)
	}
	wfs := workflow.NewService(d)
	eng := engine.New(d, wfs, engine.Builtins(nil, nil, nil), nil, engine.Options{})
	g := workflow.Graph{Schema: 1, Trigger: &workflow.Node{ID: "start", Kind: workflow.TriggerWebhook, Config: json.RawMessage(cfg)},
		Nodes: []workflow.Node{{ID: "echo", Kind: workflow.NodeTransform, Config: json.RawMessage(`{"output":{"ok":true}}`)}},
		Edges: []workflow.Edge{{From: "start", To: "echo"}}}
	w, err := wfs.Create(ctx, ws, "Flow", "", &g, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wfs.Publish(ctx, ws, w.ID, "", workflow.Checks{}); err != nil {
		var ce *workflow.CompileError
		if errors.As(err, &ce) {
			t.Fatalf("publish: %v", ce.Problems)
		}
		t.Fatal(err)
	}
	key, _, err := vault.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	f.wf = w.ID
	f.hooks = trigger.New(d, vault.NewKeyring(key), eng, wfs, trigger.Options{Now: f.clock})
	if f.token, err = f.hooks.Endpoint(ctx, w.ID); err != nil {
		t.Fatal(err)
	}
	if f.secret, err = f.hooks.GenerateSecret(ctx, w.ID); err != nil {
		t.Fatal(err)
	}
	f.mux = http.NewServeMux()
	f.mux.Handle("/webhooks/{token}", f.hooks)
	return f
}

func (f *replayFixture) mac(msg string) string {
	m := hmac.New(sha256.New, []byte(f.secret))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

// post sends body with headers and returns the status and the run id.
func (f *replayFixture) post(body string, kv ...string) (int, string) {
	f.t.Helper()
	r := httptest.NewRequest("POST", "/webhooks/"+f.token, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(kv); i += 2 {
		r.Header.Set(kv[i], kv[i+1])
	}
	rec := httptest.NewRecorder()
	f.mux.ServeHTTP(rec, r)
	var out struct {
		RunID string `json:"runId"`
	}
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	return rec.Code, out.RunID
}

func (f *replayFixture) runs() int {
	f.t.Helper()
	var n int
	if err := f.d.Read().QueryRowContext(f.ctx, `SELECT count(*) FROM runs WHERE workflow_id = $1`, f.wf).Scan(&n); err != nil {
		f.t.Fatal(err)
	}
	return n
}

const replayBody = `{"action":"opened","number":7}`

// Body-only HMAC works as documented, and a delivery id dedups: the same
// delivery re-sent starts nothing new and answers with the first run's id.
func TestWebhookReplayedDeliveryStartsNothing(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := newReplayFixture(t, d, `{"auth":"hmac-sha256","header":"X-Hub-Signature-256","deliveryHeader":"X-GitHub-Delivery"}`)
		sig := "sha256=" + f.mac(replayBody)
		code, first := f.post(replayBody, "X-Hub-Signature-256", sig, "X-GitHub-Delivery", "d-1")
		if code != 202 || first == "" {
			t.Fatalf("first delivery: got %d %q, want 202 and a run", code, first)
		}
		for i := 0; i < 3; i++ {
			code, again := f.post(replayBody, "X-Hub-Signature-256", sig, "X-GitHub-Delivery", "d-1")
			if code != 202 || again != first {
				t.Fatalf("replayed delivery: got %d run %q, want 202 run %q", code, again, first)
			}
		}
		if n := f.runs(); n != 1 {
			t.Fatalf("runs after replays: got %d, want 1", n)
		}
		// Leaving the delivery header out cannot get around it.
		if code, _ := f.post(replayBody, "X-Hub-Signature-256", sig); code != 400 {
			t.Fatalf("without the delivery header: got %d, want 400", code)
		}
		// A delivery id PostgreSQL could not store is a 400, not a 5xx.
		if code, _ := f.post(replayBody, "X-Hub-Signature-256", sig, "X-GitHub-Delivery", "d-\xff"); code != 400 {
			t.Fatalf("delivery id not UTF-8: got %d, want 400", code)
		}
		// A wrong signature is still refused before anything else.
		if code, _ := f.post(replayBody, "X-Hub-Signature-256", "sha256="+f.mac("other"), "X-GitHub-Delivery", "d-9"); code != 401 {
			t.Fatalf("bad signature: got %d, want 401", code)
		}
		code, second := f.post(replayBody, "X-Hub-Signature-256", sig, "X-GitHub-Delivery", "d-2")
		if code != 202 || second == first || f.runs() != 2 {
			t.Fatalf("a new delivery: got %d run %q (%d runs), want 202, a second run", code, second, f.runs())
		}
	})
}

// Body-only HMAC without any replay setting still starts a run per request,
// as documented.
func TestWebhookBodyOnlyHMACStillWorks(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := newReplayFixture(t, d, `{"auth":"hmac-sha256","header":"X-Signature"}`)
		for i := 0; i < 2; i++ {
			if code, id := f.post(replayBody, "X-Signature", f.mac(replayBody)); code != 202 || id == "" {
				t.Fatalf("body-only HMAC: got %d %q, want 202", code, id)
			}
		}
		if code, _ := f.post(replayBody, "X-Signature", f.mac(replayBody+" ")); code != 401 {
			t.Fatalf("body-only HMAC, wrong signature: got %d, want 401", code)
		}
		if n := f.runs(); n != 2 {
			t.Fatalf("runs: got %d, want 2", n)
		}
	})
}

// Signed timestamps: fresh ones are accepted, in the Stripe, Slack and
// configured-header schemes; one older (or newer) than 5 minutes is a 401
// and starts nothing; a fresh request replayed inside the window starts
// nothing new.
func TestWebhookSignedTimestamps(t *testing.T) {
	type scheme struct {
		name, cfg string
		sign      func(f *replayFixture, ts int64, body string) []string
	}
	schemes := []scheme{
		{"stripe", `{"auth":"hmac-sha256","timestamp":"stripe"}`, func(f *replayFixture, ts int64, body string) []string {
			t := strconv.FormatInt(ts, 10)
			return []string{"Stripe-Signature", "t=" + t + ",v1=" + f.mac("0."+body) + ",v1=" + f.mac(t+"."+body)}
		}},
		{"slack", `{"auth":"hmac-sha256","timestamp":"slack"}`, func(f *replayFixture, ts int64, body string) []string {
			t := strconv.FormatInt(ts, 10)
			return []string{"X-Slack-Request-Timestamp", t, "X-Slack-Signature", "v0=" + f.mac("v0:"+t+":"+body)}
		}},
		{"header", `{"auth":"hmac-sha256","header":"X-Signature","timestamp":"header","timestampHeader":"X-Timestamp"}`, func(f *replayFixture, ts int64, body string) []string {
			t := strconv.FormatInt(ts, 10)
			return []string{"X-Timestamp", t, "X-Signature", "sha256=" + f.mac(t+"."+body)}
		}},
	}
	for _, sc := range schemes {
		t.Run(sc.name, func(t *testing.T) {
			dbtest.Each(t, func(t *testing.T, d *db.DB) {
				f := newReplayFixture(t, d, sc.cfg)
				now := f.clock().Unix()
				fresh := sc.sign(f, now-60, replayBody)
				code, first := f.post(replayBody, fresh...)
				if code != 202 || first == "" {
					t.Fatalf("fresh signed timestamp: got %d, want 202", code)
				}
				// The same request again inside the window: nothing new.
				if code, again := f.post(replayBody, fresh...); code != 202 || again != first {
					t.Fatalf("replay inside the window: got %d run %q, want 202 run %q", code, again, first)
				}
				// An unsigned Idempotency-Key added does not get around it.
				if code, again := f.post(replayBody, append(fresh, "Idempotency-Key", "made-up")...); code != 202 || again != first {
					t.Fatalf("replay with an Idempotency-Key added: got %d run %q, want 202 run %q", code, again, first)
				}
				// The captured request re-sent 5 minutes later: refused.
				f.advance(4*time.Minute + 2*time.Second)
				if code, _ := f.post(replayBody, fresh...); code != 401 {
					t.Fatalf("stale signed timestamp: got %d, want 401", code)
				}
				// Too far ahead is refused too; and a body changed under a
				// fresh timestamp's signature.
				if code, _ := f.post(replayBody, sc.sign(f, f.clock().Unix()+301, replayBody)...); code != 401 {
					t.Fatalf("timestamp 301 s ahead: got %d, want 401", code)
				}
				if code, _ := f.post(`{"action":"closed"}`, sc.sign(f, f.clock().Unix(), replayBody)...); code != 401 {
					t.Fatalf("changed body: got %d, want 401", code)
				}
				if n := f.runs(); n != 1 {
					t.Fatalf("runs: got %d, want 1 (nothing started by the refused requests)", n)
				}
				if code, id := f.post(replayBody, sc.sign(f, f.clock().Unix(), replayBody)...); code != 202 || id == first {
					t.Fatalf("a new fresh request: got %d run %q, want 202 and a new run", code, id)
				}
			})
		})
	}
}
