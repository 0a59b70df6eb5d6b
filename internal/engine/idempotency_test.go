package engine_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"taskjuice/internal/connection"
	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
	"taskjuice/internal/engine"
	"taskjuice/internal/expr"
	"taskjuice/internal/workflow"
)

// clock is the engine's clock in tests: real time plus an offset that
// tests move forward instead of sleeping.
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func newClock() *clock { return &clock{} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return db.Now().Add(c.offset)
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

// keyRecorder is an HTTP receiver that records the Idempotency-Key of each
// request and answers with the next of its scripted replies.
type keyRecorder struct {
	mu    sync.Mutex
	keys  []string
	reply []func(w http.ResponseWriter, r *http.Request)
}

func (k *keyRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	k.mu.Lock()
	k.keys = append(k.keys, r.Header.Get("Idempotency-Key"))
	var next func(w http.ResponseWriter, r *http.Request)
	if len(k.reply) > 0 {
		next, k.reply = k.reply[0], k.reply[1:]
	}
	k.mu.Unlock()
	if next == nil {
		_, _ = w.Write([]byte(`{"ok":true}`))
		return
	}
	next(w, r)
}

func (k *keyRecorder) got() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.keys...)
}

// TestOneIdempotencyKeyPerEffect: every attempt of one effect — after a
// timeout, after a retryable failure, after a crash mid-step, after a
// reauthorization hold and Resume — sends the same Idempotency-Key; each
// loop iteration is an effect of its own, and a replay is a new run with
// new keys.
func TestOneIdempotencyKeyPerEffect(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		clk := newClock()
		apps := connection.NewAppClient(f.conns, connection.NewRefresher(f.conns, connection.CatalogOAuth(f.cat, "http://127.0.0.1/callback"),
			connection.RefresherOptions{Backoff: time.Millisecond}), f.cat, privateOK)
		f.eng = engine.New(d, f.wfs, engine.Builtins(f.cat, apps, privateOK), engine.Expressions(expr.Limits{}),
			engine.Options{RetryBackoff: time.Minute, Now: clk.Now})
		// drain works until nothing is due, moving the clock past each
		// retry's backoff.
		drainAll := func(id string) engine.Run {
			t.Helper()
			for range 10 {
				f.drain()
				if r := f.run(id); r.Status.Terminal() || r.Status == engine.StatusPaused {
					return r
				}
				clk.Advance(10 * time.Minute)
			}
			return f.run(id)
		}

		// A timeout, then a 503, then success: three attempts, one key.
		rec := &keyRecorder{reply: []func(w http.ResponseWriter, r *http.Request){
			func(w http.ResponseWriter, r *http.Request) {
				// Read the body, so the server notices the client give up.
				_, _ = io.Copy(io.Discard, r.Body)
				select {
				case <-r.Context().Done():
				case <-time.After(time.Minute):
				}
			},
			func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) },
		}}
		srv := httptest.NewServer(rec)
		defer srv.Close()
		cfg, _ := json.Marshal(map[string]any{"method": "POST", "url": srv.URL, "body": map[string]any{"a": 1}, "timeoutSeconds": 1})
		wf := f.publish([]workflow.Node{{ID: "call", Kind: workflow.NodeHTTP, Config: cfg}})
		id, err := f.eng.StartRun(f.ctx, wf, nil, "manual", "")
		must(t, err)
		if r := drainAll(id); r.Status != engine.StatusCompleted {
			t.Fatalf("run after a timeout and a 503: %s, want completed", r.Status)
		}
		want := id + ":call"
		if got := rec.got(); len(got) != 3 || got[0] != want || got[1] != want || got[2] != want {
			t.Fatalf("keys of the three attempts: %q, want %q three times", got, want)
		}
		steps, _ := f.eng.Steps(f.ctx, f.ws.ID, id)
		if len(steps) != 3 || steps[0].Error == nil || steps[0].Error.Code != "TIMEOUT" || steps[2].Attempt != 3 {
			t.Fatalf("steps: %+v, want a timeout, a 503 and a third attempt", steps)
		}

		// A replay is a new run: new keys.
		rid, err := f.eng.Replay(f.ctx, f.ws.ID, id, "")
		must(t, err)
		if r := drainAll(rid); r.Status != engine.StatusCompleted {
			t.Fatalf("replay: %s", r.Status)
		}
		if got := rec.got(); len(got) != 4 || got[3] != rid+":call" {
			t.Fatalf("replay's key: %q, want %q", got[len(got)-1], rid+":call")
		}

		// Each loop iteration is its own effect, with its own key.
		loopCfg, _ := json.Marshal(map[string]any{"method": "POST", "url": srv.URL, "body": map[string]any{"who": "{{ $meta.loop.item }}"}})
		g := workflow.Graph{Schema: 1, Trigger: &workflow.Node{ID: "start", Kind: workflow.TriggerManual},
			Nodes: []workflow.Node{
				{ID: "each", Kind: workflow.NodeLoop, Config: json.RawMessage(`{"items": "{{ $trigger.names }}"}`)},
				{ID: "send", Kind: workflow.NodeHTTP, Config: loopCfg},
			},
			Edges: []workflow.Edge{{From: "start", To: "each"}, {From: "each", To: "send", When: "each"}},
		}
		w, err := f.wfs.Create(f.ctx, f.ws, "Loop", "", &g, "")
		must(t, err)
		_, err = f.wfs.Publish(f.ctx, f.ws, w.ID, "", workflow.Checks{Expressions: expr.CompileJSON})
		must(t, err)
		lid, err := f.eng.StartRun(f.ctx, w.ID, json.RawMessage(`{"names": ["Ada", "Grace"]}`), "manual", "")
		must(t, err)
		if r := drainAll(lid); r.Status != engine.StatusCompleted {
			t.Fatalf("loop run: %s", r.Status)
		}
		got := rec.got()[4:]
		if strings.Join(got, " ") != lid+":send@each#0 "+lid+":send@each#1" {
			t.Fatalf("loop keys: %q, want one per iteration", got)
		}
	})
}

// TestIdempotencyKeySurvivesReauthHold: a post that finds its connection
// revoked holds the run; once reconnected and resumed, the post goes out
// under the key its first attempt had.
func TestIdempotencyKeySurvivesReauthHold(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		var mu sync.Mutex
		var keys []string
		f.before = func(r *http.Request) {
			if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/messages") {
				mu.Lock()
				keys = append(keys, r.Header.Get("Idempotency-Key"))
				mu.Unlock()
			}
		}
		wf := f.publish([]workflow.Node{f.bound(post("Hello"))})
		// The access token still works, the app refuses the post: the
		// effect's first attempt reaches the app.
		if _, err := f.sb.RevokeAccount("Acme Chat"); err != nil {
			t.Fatal(err)
		}
		id, err := f.eng.StartRun(f.ctx, wf, nil, "manual", "")
		must(t, err)
		f.drain()
		if r := f.run(id); r.Status != engine.StatusPaused || r.PauseReason != engine.PauseReauth {
			t.Fatalf("run: %s (%s), want paused for reauth", r.Status, r.PauseReason)
		}
		f.reconnect()
		status := func(_ context.Context, id string) (string, error) {
			c, err := f.conns.Get(f.ctx, f.ws, id)
			return string(c.Status), err
		}
		must(t, f.eng.Resume(f.ctx, f.ws.ID, id, "", status))
		f.drain()
		if r := f.run(id); r.Status != engine.StatusCompleted {
			t.Fatalf("after resume: %s", r.Status)
		}
		steps, _ := f.eng.Steps(f.ctx, f.ws.ID, id)
		if len(steps) < 2 {
			t.Fatalf("steps: %+v, want the held attempt and the one after Resume", steps)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(keys) == 0 {
			t.Fatal("no post reached the app")
		}
		for _, k := range keys {
			if k != id+":post" {
				t.Fatalf("post keys: %q, want every one %q", keys, id+":post")
			}
		}
		for _, s := range steps {
			if s.IdempotencyKey != id+":post" {
				t.Fatalf("step %s attempt %d recorded key %q, want %q", s.NodeID, s.Attempt, s.IdempotencyKey, id+":post")
			}
		}
	})
}
