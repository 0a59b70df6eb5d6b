package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"time"

	"taskjuice/internal/catalog"
	"taskjuice/internal/connection"
	"taskjuice/internal/trigger"
	"taskjuice/internal/vault"
	"taskjuice/internal/workflow"
)

// instantTarget is how long an instant delivery may take to become a
// recorded run, at p95 (from the app-trigger acceptance criteria).
const instantTarget = 50 * time.Millisecond

// instantResult is what the instant part measured.
type instantResult struct {
	ok            bool
	deliveries    int
	runs          int
	p50, p95, p99 time.Duration
	took          time.Duration
}

// timedDeliveries wraps the delivery handler and records how long each
// answered delivery took: the Listener answers 200 once the delivery's
// runs are recorded, so this is delivery -> recorded run.
type timedDeliveries struct {
	h     http.Handler
	mu    sync.Mutex
	times []time.Duration
	other int // answers other than 200
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(s int) {
	w.status = s
	w.ResponseWriter.WriteHeader(s)
}

func (t *timedDeliveries) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	t.h.ServeHTTP(sw, r)
	took := time.Since(start)
	t.mu.Lock()
	defer t.mu.Unlock()
	if sw.status == http.StatusOK {
		t.times = append(t.times, took)
	} else {
		t.other++
	}
}

func (t *timedDeliveries) snapshot() ([]time.Duration, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.times), t.other
}

// instant publishes a workflow whose trigger is Sandbox Chat's instant
// trigger on #random, subscribed at the sandbox through the Listener as
// serve does; n messages posted there are delivered by the sandbox, signed,
// to the Listener's HTTP handler, and each must become exactly one
// recorded run.
func (t *triggersBench) instant(ctx context.Context, connID string, n int) (instantResult, error) {
	var res instantResult
	key, _, err := vault.GenerateKey()
	if err != nil {
		return res, err
	}
	var listener *trigger.Listener
	timed := &timedDeliveries{h: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { listener.ServeHTTP(w, r) })}
	srv := httptest.NewServer(timed)
	defer srv.Close()
	listener = trigger.NewListener(t.d, vault.NewKeyring(key), t.eng, connection.NewAppClient(t.conns, t.refresh, t.cat, t.hc), t.cat,
		trigger.ListenerOptions{BaseURL: srv.URL, Log: t.log})

	cfg := workflow.AppTriggerConfig{App: catalog.SandboxKey, Trigger: "new-message-instant", Inputs: map[string]string{"channel": "random"}}
	raw, _ := json.Marshal(cfg)
	note, _ := json.Marshal(map[string]any{"output": map[string]any{"text": "{{ $trigger.text }}"}})
	g := workflow.Graph{Schema: 1,
		Trigger: &workflow.Node{ID: "message", Kind: workflow.TriggerApp, Config: raw, Connection: &workflow.Binding{ID: connID}},
		Nodes:   []workflow.Node{{ID: "copy", Kind: workflow.NodeTransform, Config: note}},
		Edges:   []workflow.Edge{{From: "message", To: "copy"}}}
	wf, err := t.wfs.Create(ctx, t.ws, "Instant", "", &g, "")
	if err != nil {
		return res, fmt.Errorf("create the instant workflow: %w", err)
	}
	if _, err := t.wfs.Publish(ctx, t.ws, wf.ID, "", workflow.Checks{}); err != nil {
		return res, fmt.Errorf("publish the instant workflow: %w", err)
	}
	if err := listener.Sync(ctx, trigger.InstantTrigger{WorkflowID: wf.ID, NodeID: "message", App: cfg.App, Trigger: cfg.Trigger,
		ConnectionID: connID, Inputs: cfg.Inputs}); err != nil {
		return res, err
	}
	st, ok, err := listener.State(ctx, wf.ID)
	if err != nil {
		return res, err
	}
	if !ok || st.State != trigger.InstantSubscribed {
		return res, fmt.Errorf("the instant trigger did not subscribe at the sandbox: %s %s", st.State, st.LastError)
	}

	start := time.Now()
	if _, err := t.sb.Emit("Bench", "random", "Instant", n); err != nil {
		return res, err
	}
	deadline := time.Now().Add(time.Minute + time.Duration(n)*50*time.Millisecond)
	for {
		times, other := timed.snapshot()
		if len(times)+other >= n {
			break
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("instant deliveries: %d of %d answered before the deadline", len(times)+other, n)
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	res.took = time.Since(start)
	times, other := timed.snapshot()
	var distinct int
	if err := t.d.Read().QueryRowContext(ctx, `SELECT count(*), count(DISTINCT dedup_key) FROM runs WHERE workflow_id = $1`, wf.ID).
		Scan(&res.runs, &distinct); err != nil {
		return res, err
	}
	slices.Sort(times)
	res.deliveries = len(times)
	if len(times) > 0 {
		res.p50, res.p95, res.p99 = quantile(times, 0.5), quantile(times, 0.95), quantile(times, 0.99)
	}
	res.ok = other == 0 && res.deliveries == n && res.runs == n && distinct == n && res.p95 < instantTarget
	_ = listener.Remove(ctx, wf.ID)
	return res, nil
}

func (r instantResult) print(out io.Writer, n int) {
	fmt.Fprintf(out, "%d messages in #random delivered by the sandbox, signed, to the instant trigger's address -> %d recorded runs in %s; delivery -> recorded run p50 %s, p95 %s, p99 %s (target p95 < %s): %s\n",
		n, r.runs, round(r.took), ms(r.p50), ms(r.p95), ms(r.p99), ms(instantTarget), verdict(r.ok))
}
