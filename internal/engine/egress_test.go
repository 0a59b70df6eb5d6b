package engine_test

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"taskjuice/internal/connection"
	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
	"taskjuice/internal/egress"
	"taskjuice/internal/engine"
	"taskjuice/internal/expr"
	"taskjuice/internal/workflow"
)

// privateOK is the opt-in (--http-allow-private) tests need to reach their
// httptest servers on loopback.
var privateOK = egress.Client(egress.Policy{AllowPrivate: true}, time.Minute)

// counter is an httptest server on ip that counts what it receives.
func counter(t *testing.T, ip string, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		if h != nil {
			h(w, r)
			return
		}
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Skipf("cannot listen on %s: %v", ip, err)
	}
	ts.Listener.Close()
	ts.Listener = l
	ts.Start()
	t.Cleanup(ts.Close)
	return ts, &n
}

// runOnce starts the workflow with the payload, lets the engine work until
// the run ends (moving its clock past retries) and returns the run and its
// last step.
func (f *fixture) runOnce(wf string, payload string) (engine.Run, engine.Step) {
	f.t.Helper()
	id, err := f.eng.StartRun(f.ctx, wf, json.RawMessage(payload), "manual", "")
	must(f.t, err)
	f.drainPast(f.clk, id)
	steps, err := f.eng.Steps(f.ctx, f.ws.ID, id)
	must(f.t, err)
	if len(steps) == 0 {
		f.t.Fatalf("run %s: no steps", f.run(id).Status)
	}
	return f.run(id), steps[len(steps)-1]
}

func httpStep(url string) workflow.Node {
	cfg, _ := json.Marshal(map[string]any{"method": "GET", "url": url})
	return workflow.Node{ID: "call", Kind: workflow.NodeHTTP, Config: cfg}
}

// An HTTP step bound to a connection whose URL is known only at run time is
// refused there when it names a host the connection's app does not
// declare: the run fails with HOST_NOT_ALLOWED, no request leaves, and the
// app's own host still works.
func TestHTTPStepWithConnectionRefusesOtherHosts(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		refresher := connection.NewRefresher(f.conns, connection.CatalogOAuth(f.cat, "http://127.0.0.1/callback"), connection.RefresherOptions{Backoff: time.Millisecond})
		apps := connection.NewAppClient(f.conns, refresher, f.cat, privateOK)
		f.eng = engine.New(d, f.wfs, engine.Builtins(f.cat, apps, privateOK), engine.Expressions(expr.Limits{}), engine.Options{RetryBackoff: 10 * time.Millisecond, Now: f.clk.Now})
		evil, hits := counter(t, "127.0.0.1", nil)
		wf := f.publish([]workflow.Node{f.bound(httpStep("{{ $trigger.target }}"))})

		run, step := f.runOnce(wf, `{"target": "`+evil.URL+`/collect"}`)
		if run.Status != engine.StatusFailed || step.Error == nil || step.Error.Code != "HOST_NOT_ALLOWED" || step.Error.Retryable {
			t.Fatalf("run to another host: %s, step error %+v; want failed with HOST_NOT_ALLOWED, not retryable", run.Status, step.Error)
		}
		if want := "allowed hosts: " + f.sbURL; !strings.Contains(step.Error.Message, want) || !strings.Contains(step.Error.Message, evil.URL) {
			t.Fatalf("message: got %q, want it to name %s and %q", step.Error.Message, evil.URL, want)
		}
		if hits.Load() != 0 {
			t.Fatalf("requests received: got %d, want 0", hits.Load())
		}

		run, step = f.runOnce(wf, `{"target": "`+f.sbURL+`/api/channels"}`)
		if run.Status != engine.StatusCompleted {
			t.Fatalf("run to the app's own host: %s, %+v; want completed", run.Status, step.Error)
		}
	})
}

// Without the operator's opt-in an HTTP step cannot reach a loopback
// address, nor be redirected to one; with it, it can.
func TestHTTPStepPrivateAddresses(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		inside, hits := counter(t, "127.0.0.1", nil)
		f.eng = engine.New(d, f.wfs, engine.Builtins(f.cat, nil, nil), engine.Expressions(expr.Limits{}), engine.Options{RetryBackoff: 10 * time.Millisecond, Now: f.clk.Now})
		wf := f.publish([]workflow.Node{httpStep("{{ $trigger.target }}")})
		for _, target := range []string{inside.URL, "http://169.254.169.254/latest/meta-data/"} {
			run, step := f.runOnce(wf, `{"target": "`+target+`"}`)
			if run.Status != engine.StatusFailed || step.Error == nil || step.Error.Code != "ADDRESS_NOT_ALLOWED" {
				t.Fatalf("%s without opt-in: %s, %+v; want failed with ADDRESS_NOT_ALLOWED", target, run.Status, step.Error)
			}
		}
		if hits.Load() != 0 {
			t.Fatalf("requests received without opt-in: got %d, want 0", hits.Load())
		}

		// The operator allows 127.0.0.1 only: a redirect to 127.0.0.2 is refused.
		target, targetHits := counter(t, "127.0.0.2", nil)
		front, _ := counter(t, "127.0.0.1", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, target.URL+"/inside", http.StatusFound)
		})
		cidrs, err := egress.ParseCIDRs("127.0.0.1/32")
		must(t, err)
		f.eng = engine.New(d, f.wfs, engine.Builtins(f.cat, nil, egress.Client(egress.Policy{AllowCIDRs: cidrs}, time.Minute)), engine.Expressions(expr.Limits{}), engine.Options{RetryBackoff: 10 * time.Millisecond, Now: f.clk.Now})
		run, step := f.runOnce(wf, `{"target": "`+inside.URL+`"}`)
		if run.Status != engine.StatusCompleted || hits.Load() != 1 {
			t.Fatalf("with 127.0.0.1/32 allowed: %s, %+v, %d requests; want completed after one", run.Status, step.Error, hits.Load())
		}
		run, step = f.runOnce(wf, `{"target": "`+front.URL+`"}`)
		if run.Status != engine.StatusFailed || step.Error == nil || step.Error.Code != "ADDRESS_NOT_ALLOWED" || targetHits.Load() != 0 {
			t.Fatalf("redirect to 127.0.0.2: %s, %+v, %d requests there; want failed with ADDRESS_NOT_ALLOWED and 0", run.Status, step.Error, targetHits.Load())
		}
	})
}
