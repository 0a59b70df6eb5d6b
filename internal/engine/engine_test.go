package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
	"taskjuice/internal/catalog"
	"taskjuice/internal/connection"
	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
	"taskjuice/internal/engine"
	"taskjuice/internal/expr"
	"taskjuice/internal/sandbox"
	"taskjuice/internal/vault"
	"taskjuice/internal/workflow"
)

type fixture struct {
	t      *testing.T
	ctx    context.Context
	d      *db.DB
	ws     account.Workspace
	conns  *connection.Service
	wfs    *workflow.Service
	eng    *engine.Engine
	sb     *sandbox.Provider
	sbURL  string
	cat    *catalog.Catalog
	connID string
	// modelCheck answers the publish gate about models (see models()).
	modelCheck func(providerID, model string) (bool, bool)
	// before, when set, sees each request to the sandbox first.
	before func(r *http.Request)
	// intercept, when set, may answer a request to the sandbox itself
	// (it returns true when it did).
	intercept func(w http.ResponseWriter, r *http.Request) bool
	// clk is the clock of the engine setup makes.
	clk *clock
}

func setup(t *testing.T, d *db.DB) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{t: t, ctx: ctx, d: d, clk: newClock()}
	accounts := account.NewService(d)
	a, _, err := accounts.CreateAccount(ctx, "Agency", account.NewUser{Email: "o@a.example", Password: "correct horse battery"})
	must(t, err)
	f.ws, err = accounts.CreateWorkspaceForAccount(ctx, a.ID, "Acme", "acme")
	must(t, err)

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.before != nil {
			f.before(r)
		}
		if f.intercept != nil && f.intercept(w, r) {
			return
		}
		f.sb.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	f.sbURL = srv.URL
	f.sb, err = sandbox.New(sandbox.Options{BaseURL: srv.URL, Clients: []sandbox.Client{{ID: "taskjuice", RedirectURIs: []string{"http://127.0.0.1/callback"}}}})
	must(t, err)
	t.Cleanup(func() { _ = f.sb.Close() })
	f.cat, err = catalog.Load(catalog.Options{Getenv: func(string) string { return "" }, SandboxURL: srv.URL})
	must(t, err)

	key, _, err := vault.GenerateKey()
	must(t, err)
	f.conns = connection.NewService(d, vault.NewKeyring(key))
	refresher := connection.NewRefresher(f.conns, connection.CatalogOAuth(f.cat, "http://127.0.0.1/callback"), connection.RefresherOptions{Backoff: time.Millisecond})
	apps := connection.NewAppClient(f.conns, refresher, f.cat, nil)
	f.wfs = workflow.NewService(d)
	// HTTP steps call httptest servers on loopback: opt in as an operator would.
	f.eng = engine.New(d, f.wfs, engine.Builtins(f.cat, apps, privateOK), nil, engine.Options{RetryBackoff: 10 * time.Millisecond, Now: f.clk.Now})

	c, err := f.conns.CreateWithCredential(ctx, f.ws, connection.New{AppKey: "sandbox-chat", Label: "Chat", Status: connection.StatusActive},
		connection.Credential{OAuth: connection.FromOAuth2(f.grant("Acme Chat"))}, connection.System)
	must(t, err)
	f.connID = c.ID
	return f
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// grant gets a real token from the sandbox through its consent flow.
func (f *fixture) grant(account string) *oauth2.Token {
	f.t.Helper()
	app, _ := f.cat.App("sandbox-chat")
	cfg, err := connection.OAuthConfig(app, "http://127.0.0.1/callback")
	must(f.t, err)
	verifier := oauth2.GenerateVerifier()
	cb, err := sandbox.Consent(f.ctx, nil, cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier)), account, true)
	must(f.t, err)
	tok, err := cfg.Exchange(f.ctx, cb.Query().Get("code"), oauth2.VerifierOption(verifier))
	must(f.t, err)
	return tok
}

// reconnect stores a fresh grant on the same connection and marks it
// active, as a completed reconnect does.
func (f *fixture) reconnect() {
	f.t.Helper()
	raw, _ := json.Marshal(connection.Credential{OAuth: connection.FromOAuth2(f.grant("Acme Chat"))})
	_, err := f.conns.StoreSecret(f.ctx, f.connID, raw)
	must(f.t, err)
	_, err = f.conns.Transition(f.ctx, f.connID, connection.StatusActive, "reconnected", connection.System, nil)
	must(f.t, err)
}

// publish creates and publishes a workflow: manual trigger, then nodes in a
// chain (plus extra edges).
func (f *fixture) publish(nodes []workflow.Node, extra ...workflow.Edge) string {
	f.t.Helper()
	g := workflow.Graph{Schema: 1, Trigger: &workflow.Node{ID: "start", Kind: workflow.TriggerManual}, Nodes: nodes}
	prev := "start"
	for _, n := range nodes {
		g.Edges = append(g.Edges, workflow.Edge{From: prev, To: n.ID, When: mainPath(prev, nodes)})
		prev = n.ID
	}
	g.Edges = append(g.Edges, extra...)
	w, err := f.wfs.Create(f.ctx, f.ws, "Flow", "", &g, "")
	must(f.t, err)
	checks := workflow.Checks{Apps: f.cat, Connection: func(id string) (string, string, bool) {
		c, err := f.conns.Get(f.ctx, f.ws, id)
		return c.AppKey, string(c.Status), err == nil
	}}
	_, err = f.wfs.Publish(f.ctx, f.ws, w.ID, "", checks)
	var ce *workflow.CompileError
	if errors.As(err, &ce) {
		f.t.Fatalf("publish: %v", ce.Problems)
	}
	must(f.t, err)
	return w.ID
}

func mainPath(id string, nodes []workflow.Node) string {
	for _, n := range nodes {
		if n.ID == id && n.Kind == workflow.NodeBranch {
			return "true"
		}
	}
	return ""
}

func (f *fixture) drain() {
	f.t.Helper()
	for range 100 {
		did, err := f.eng.Work(f.ctx)
		must(f.t, err)
		if !did {
			return
		}
	}
	f.t.Fatal("the engine kept finding work")
}

// drainPast works on due runs until run id is over, moving clk past each
// retry's backoff instead of waiting for it.
func (f *fixture) drainPast(clk *clock, id string) {
	f.t.Helper()
	for range 20 {
		f.drain()
		if f.run(id).Status.Terminal() {
			return
		}
		clk.Advance(time.Minute)
	}
}

func (f *fixture) run(id string) engine.Run {
	f.t.Helper()
	r, err := f.eng.Get(f.ctx, f.ws.ID, id)
	must(f.t, err)
	return r
}

func post(text string) workflow.Node {
	cfg, _ := json.Marshal(map[string]any{"app": "sandbox-chat", "action": "post-message", "inputs": map[string]any{"channel": "general", "text": text}})
	return workflow.Node{ID: "post", Kind: workflow.NodeAction, Config: cfg}
}

func (f *fixture) bound(n workflow.Node) workflow.Node {
	n.Connection = &workflow.Binding{ID: f.connID}
	return n
}

func TestRunCompletes(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		wf := f.publish([]workflow.Node{
			f.bound(post("Hello")),
			{ID: "check", Kind: workflow.NodeBranch, Config: json.RawMessage(`{"condition": "true"}`)},
			{ID: "done", Kind: workflow.NodeTransform, Config: json.RawMessage(`{"output": {"ok": true}}`)},
		})
		id, err := f.eng.StartRun(f.ctx, wf, json.RawMessage(`{"name":"Ada"}`), "manual", "")
		must(t, err)
		if r := f.run(id); r.Status != engine.StatusPending {
			t.Fatalf("new run: %s, want pending", r.Status)
		}
		f.drain()
		r := f.run(id)
		if r.Status != engine.StatusCompleted || r.StepsDone != 3 || r.FinishedAt == nil {
			t.Fatalf("run: %s after %d steps", r.Status, r.StepsDone)
		}
		steps, err := f.eng.Steps(f.ctx, f.ws.ID, id)
		must(t, err)
		if len(steps) != 3 || steps[0].NodeID != "post" || steps[2].NodeID != "done" || string(steps[2].Output) != `{"ok":true}` {
			t.Fatalf("steps: %+v", steps)
		}
		if got := f.sb.Stats().MessagesPosted; got != 1 {
			t.Fatalf("messages posted: %d, want 1", got)
		}
		// Dedup: the same key returns the same run.
		a, _ := f.eng.StartRun(f.ctx, wf, nil, "webhook", "key-1")
		b, _ := f.eng.StartRun(f.ctx, wf, nil, "webhook", "key-1")
		if a != b {
			t.Fatalf("dedup: %s and %s", a, b)
		}
		// Replay a finished run: a new run, the original untouched.
		rid, err := f.eng.Replay(f.ctx, f.ws.ID, id, "")
		must(t, err)
		if rid == id {
			t.Fatal("replay reused the run id")
		}
		f.drain()
		if f.run(rid).Status != engine.StatusCompleted || f.run(id).StepsDone != 3 {
			t.Fatal("replay did not complete, or changed the original")
		}
		if _, err := f.eng.Replay(f.ctx, "other-workspace", id, ""); !apperr.IsNotFound(err) {
			t.Fatalf("replay from another workspace: %v", err)
		}
	})
}

func TestReauthorizationHoldsTheRun(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		wf := f.publish([]workflow.Node{f.bound(post("Hello"))})
		if _, err := f.sb.RevokeAccount("Acme Chat"); err != nil {
			t.Fatal(err)
		}
		id, err := f.eng.StartRun(f.ctx, wf, nil, "manual", "")
		must(t, err)
		f.drain()
		r := f.run(id)
		if r.Status != engine.StatusPaused || r.PauseReason != engine.PauseReauth || r.PausedConnectionID != f.connID {
			t.Fatalf("run after a revoked grant: %s (%s on %q), want paused for reauth", r.Status, r.PauseReason, r.PausedConnectionID)
		}
		c, _ := f.conns.Get(f.ctx, f.ws, f.connID)
		if c.Status != connection.StatusError {
			t.Fatalf("connection: %s, want error", c.Status)
		}
		status := func(ctx context.Context, id string) (string, error) {
			c, err := f.conns.Get(ctx, f.ws, id)
			return string(c.Status), err
		}
		err = f.eng.Resume(f.ctx, f.ws.ID, id, "", status)
		if e, ok := apperr.As(err); !ok || apperr.Status(err) != 409 || e.Message != engine.MsgResumeNeedsConnection {
			t.Fatalf("resume before reconnect: %v, want 409", err)
		}

		// Reconnected: the pending reauthorization is consumed, but a
		// non-agent run stays paused until someone presses Resume.
		f.reconnect()
		n, err := f.eng.ConsumeReauthorizations(f.ctx)
		must(t, err)
		if n != 0 || f.run(id).Status != engine.StatusPaused {
			t.Fatalf("after reconnect: %d resumed, run %s; want 0 and still paused", n, f.run(id).Status)
		}
		if n, _ := f.eng.ConsumeReauthorizations(f.ctx); n != 0 {
			t.Fatal("a signal was consumed twice")
		}
		must(t, f.eng.Resume(f.ctx, f.ws.ID, id, "", status))
		f.drain()
		if r := f.run(id); r.Status != engine.StatusCompleted {
			t.Fatalf("after resume: %s, want completed", r.Status)
		}
		if got := f.sb.Stats().MessagesPosted; got != 1 {
			t.Fatalf("messages posted: %d, want exactly 1", got)
		}
	})
}

func TestAutoResumeAfterReconnect(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		wf := f.publish([]workflow.Node{f.bound(post("Hello"))})
		_, err := d.Write().ExecContext(f.ctx, `UPDATE workflows SET auto_resume_reauth = TRUE WHERE id = $1`, wf)
		must(t, err)
		_, _ = f.sb.RevokeAccount("Acme Chat")
		var ids []string
		for range 3 {
			id, err := f.eng.StartRun(f.ctx, wf, nil, "manual", "")
			must(t, err)
			ids = append(ids, id)
		}
		f.drain()
		for _, id := range ids {
			if f.run(id).Status != engine.StatusPaused {
				t.Fatalf("run %s: %s, want paused", id, f.run(id).Status)
			}
		}
		f.reconnect()
		n, err := f.eng.ConsumeReauthorizations(f.ctx)
		must(t, err)
		if n != 3 {
			t.Fatalf("resumed %d, want 3", n)
		}
		f.drain()
		for _, id := range ids {
			if f.run(id).Status != engine.StatusCompleted {
				t.Fatalf("run %s: %s, want completed", id, f.run(id).Status)
			}
		}
	})
}

func TestWaitsAndActions(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		clk := newClock()
		f.eng = engine.New(d, f.wfs, engine.Builtins(f.cat, nil, nil), nil, engine.Options{Now: clk.Now})
		wf := f.publish([]workflow.Node{
			{ID: "wait", Kind: workflow.NodeDelay, Config: json.RawMessage(`{"duration": "1s"}`)},
			{ID: "ok", Kind: workflow.NodeApproval, Config: json.RawMessage(`{"message": "Send it?"}`)},
		})
		id, err := f.eng.StartRun(f.ctx, wf, nil, "manual", "")
		must(t, err)
		f.drain()
		if r := f.run(id); r.Status != engine.StatusWaiting {
			t.Fatalf("after the delay starts: %s, want waiting", r.Status)
		}
		f.drain()
		if r := f.run(id); r.Status != engine.StatusWaiting || r.WaitReason != "delay" {
			t.Fatalf("before the delay is over: %s (%s), want waiting for the delay", r.Status, r.WaitReason)
		}
		clk.Advance(1100 * time.Millisecond)
		f.drain()
		if r := f.run(id); r.Status != engine.StatusWaiting || r.WaitReason != "approval" {
			t.Fatalf("after the delay: %s (%s), want waiting for approval", r.Status, r.WaitReason)
		}
		must(t, f.eng.Decide(f.ctx, f.ws.ID, id, "", true, "go"))
		f.drain()
		if r := f.run(id); r.Status != engine.StatusCompleted {
			t.Fatalf("after approval: %s", r.Status)
		}
		steps, _ := f.eng.Steps(f.ctx, f.ws.ID, id)
		if last := steps[len(steps)-1]; string(last.Output) != `{"approved":true,"by":"","comment":"go"}` {
			t.Fatalf("approval output: %s", last.Output)
		}

		// Pause and cancel.
		id2, _ := f.eng.StartRun(f.ctx, wf, nil, "manual", "")
		must(t, f.eng.Pause(f.ctx, f.ws.ID, id2, ""))
		f.drain()
		if f.run(id2).Status != engine.StatusPaused {
			t.Fatal("a paused run moved on")
		}
		must(t, f.eng.Cancel(f.ctx, f.ws.ID, id2, ""))
		if r := f.run(id2); r.Status != engine.StatusCancelled {
			t.Fatalf("cancel: %s", r.Status)
		}
		if err := f.eng.Cancel(f.ctx, f.ws.ID, id2, ""); !apperr.Is(err, apperr.KindConflict) {
			t.Fatalf("cancel twice: %v", err)
		}
		if _, err := f.eng.Replay(f.ctx, f.ws.ID, id, ""); err != nil {
			t.Fatalf("replay a completed run: %v", err)
		}
	})
}

func TestRetriesAndIdempotencyKeys(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		var mu sync.Mutex
		var keys []string
		fails := 2
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			keys = append(keys, r.Header.Get("Idempotency-Key"))
			if fails > 0 {
				fails--
				w.WriteHeader(503)
				return
			}
			_, _ = w.Write([]byte(`{"ok":true}`))
		}))
		defer srv.Close()
		cfg, _ := json.Marshal(map[string]any{"method": "POST", "url": srv.URL, "body": map[string]any{"a": 1}})
		wf := f.publish([]workflow.Node{{ID: "call", Kind: workflow.NodeHTTP, Config: cfg}})
		id, err := f.eng.StartRun(f.ctx, wf, nil, "manual", "")
		must(t, err)
		f.drainPast(f.clk, id)
		if r := f.run(id); r.Status != engine.StatusCompleted {
			t.Fatalf("after two 503s: %s, want completed on the third attempt", r.Status)
		}
		if len(keys) != 3 || keys[0] != id+":call" || keys[1] != keys[0] || keys[2] != keys[0] {
			t.Fatalf("idempotency keys of the three attempts: %v, want %q each time", keys, id+":call")
		}
		steps, _ := f.eng.Steps(f.ctx, f.ws.ID, id)
		if len(steps) != 3 || steps[0].Error == nil || steps[0].Error.ProviderStatus != 503 || !steps[0].Error.Retryable {
			t.Fatalf("steps: %+v", steps)
		}

		// A step interrupted mid-flight is retried under the same key.
		keys = nil
		id2, err := f.eng.StartRun(f.ctx, wf, nil, "manual", "")
		must(t, err)
		_, err = d.Write().ExecContext(f.ctx, `INSERT INTO run_steps (id, run_id, node_id, attempt, status, idempotency_key, started_at)
			VALUES ('interrupted', $1, 'call', 1, 'running', 'the-same-key', $2)`, id2, time.Now().UTC())
		must(t, err)
		// As the worker that recorded the step left the run: running.
		_, err = d.Write().ExecContext(f.ctx, `UPDATE runs SET status = 'running' WHERE id = $1`, id2)
		must(t, err)
		f.drain()
		if r := f.run(id2); r.Status != engine.StatusCompleted || len(keys) != 1 || keys[0] != "the-same-key" {
			t.Fatalf("interrupted step: run %s, keys %v", r.Status, keys)
		}

		// A non-retryable failure fails the run with the structured error.
		bad, _ := json.Marshal(map[string]any{"method": "GET", "url": srv.URL + "/missing"})
		srv.Config.Handler = http.NotFoundHandler()
		wf2 := f.publish([]workflow.Node{{ID: "call", Kind: workflow.NodeHTTP, Config: bad}})
		id3, _ := f.eng.StartRun(f.ctx, wf2, nil, "manual", "")
		f.drain()
		r := f.run(id3)
		if r.Status != engine.StatusFailed || r.Error == nil || r.Error.Code != "NOT_FOUND" || r.Error.ProviderStatus != 404 || r.Error.Retryable {
			t.Fatalf("404: %s %+v", r.Status, r.Error)
		}
	})
}

func TestUnpublishedWorkflowStartsNothing(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		w, err := f.wfs.Create(f.ctx, f.ws, "Draft only", "", nil, "")
		must(t, err)
		if _, err := f.eng.StartRun(f.ctx, w.ID, nil, "manual", ""); !errors.Is(err, engine.ErrNotDispatching) {
			t.Fatalf("start a draft: %v", err)
		}
	})
}

func TestListRuns(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		wf := f.publish([]workflow.Node{{ID: "done", Kind: workflow.NodeTransform, Config: json.RawMessage(`{"output": 1}`)}})
		var ids []string
		for range 5 {
			id, err := f.eng.StartRun(f.ctx, wf, nil, "manual", "")
			must(t, err)
			ids = append(ids, id)
		}
		// People tell runs apart by the first 8 characters of their ids.
		short := map[string]bool{}
		for _, id := range ids {
			short[id[:8]] = true
		}
		if len(short) != len(ids) {
			t.Fatalf("runs started together share the first 8 characters of their ids: %v", ids)
		}
		page, err := f.eng.List(f.ctx, f.ws.ID, engine.ListFilter{Limit: 2})
		must(t, err)
		if len(page) != 2 || page[0].ID != ids[4] || page[1].ID != ids[3] || page[0].WorkflowName != "Flow" {
			t.Fatalf("first page: %+v", page)
		}
		next, _ := f.eng.List(f.ctx, f.ws.ID, engine.ListFilter{Limit: 2, Before: page[1].ID})
		if len(next) != 2 || next[0].ID != ids[2] {
			t.Fatalf("second page: %+v", next)
		}
		pending, _ := f.eng.List(f.ctx, f.ws.ID, engine.ListFilter{Status: engine.StatusPending})
		if len(pending) != 5 {
			t.Fatalf("pending: %d", len(pending))
		}
		byPrefix, _ := f.eng.List(f.ctx, f.ws.ID, engine.ListFilter{IDPrefix: ids[0][:30]})
		if len(byPrefix) == 0 || byPrefix[len(byPrefix)-1].ID != ids[0] {
			t.Fatalf("prefix: %+v", byPrefix)
		}
		if other, _ := f.eng.List(f.ctx, "another-workspace", engine.ListFilter{}); len(other) != 0 {
			t.Fatal("runs leaked across workspaces")
		}
	})
}

func TestCallWorkflow(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		clk := newClock()
		eng := engine.New(d, f.wfs, engine.Builtins(f.cat, nil, nil), engine.Expressions(expr.Limits{}), engine.Options{Now: clk.Now})
		f.eng = eng
		child := f.publish([]workflow.Node{{ID: "double", Kind: workflow.NodeTransform, Config: json.RawMessage(`{"output": {"doubled": "{{ $trigger.n * 2 }}"}}`)}})
		callCfg, _ := json.Marshal(map[string]any{"workflowId": child, "input": map[string]any{"n": "{{ $trigger.n }}"}})
		parent := f.publish([]workflow.Node{
			{ID: "sub", Kind: workflow.NodeCallWorkflow, Config: callCfg},
			{ID: "after", Kind: workflow.NodeTransform, Config: json.RawMessage(`{"output": {"got": "{{ $steps.sub.data.output.doubled }}"}}`)},
		})
		id, err := eng.StartRun(f.ctx, parent, json.RawMessage(`{"n": 21}`), "manual", "")
		must(t, err)
		f.drain()
		r := f.run(id)
		steps, _ := eng.Steps(f.ctx, f.ws.ID, id)
		if r.Status != engine.StatusCompleted || len(steps) != 2 || string(steps[1].Output) != `{"got":42}` {
			t.Fatalf("caller: %s, steps %+v", r.Status, steps)
		}

		// A called run that fails fails the calling step.
		failing := f.publish([]workflow.Node{{ID: "boom", Kind: workflow.NodeHTTP, Config: json.RawMessage(`{"method": "GET", "url": "http://127.0.0.1:1/nothing"}`)}})
		callCfg, _ = json.Marshal(map[string]any{"workflowId": failing})
		parent2 := f.publish([]workflow.Node{{ID: "sub", Kind: workflow.NodeCallWorkflow, Config: callCfg}})
		id2, err := eng.StartRun(f.ctx, parent2, nil, "manual", "")
		must(t, err)
		f.drainPast(clk, id2)
		if r := f.run(id2); r.Status != engine.StatusFailed || r.Error == nil || r.Error.Code != "CALLED_WORKFLOW_FAILED" {
			t.Fatalf("caller of a failing workflow: %s %+v", r.Status, r.Error)
		}
	})
}

func TestLoop(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		f.eng = engine.New(d, f.wfs, engine.Builtins(f.cat, nil, nil), engine.Expressions(expr.Limits{}), engine.Options{})
		g := workflow.Graph{Schema: 1, Trigger: &workflow.Node{ID: "start", Kind: workflow.TriggerManual},
			Nodes: []workflow.Node{
				{ID: "each", Kind: workflow.NodeLoop, Config: json.RawMessage(`{"items": "{{ $trigger.names }}"}`)},
				{ID: "greet", Kind: workflow.NodeTransform, Config: json.RawMessage(`{"output": {"hi": "{{ $meta.loop.item }}", "n": "{{ $meta.loop.index }}"}}`)},
				{ID: "collect", Kind: workflow.NodeTransform, Config: json.RawMessage(`{"output": {"last": "{{ $steps.greet.data.hi }}", "count": "{{ $steps.each.data.count }}"}}`)},
			},
			Edges: []workflow.Edge{{From: "start", To: "each"}, {From: "each", To: "greet", When: "each"}, {From: "each", To: "collect", When: "done"}},
		}
		w, err := f.wfs.Create(f.ctx, f.ws, "Loop", "", &g, "")
		must(t, err)
		_, err = f.wfs.Publish(f.ctx, f.ws, w.ID, "", workflow.Checks{Expressions: expr.CompileJSON})
		must(t, err)

		id, err := f.eng.StartRun(f.ctx, w.ID, json.RawMessage(`{"names": ["Ada", "Grace", "Edsger"]}`), "manual", "")
		must(t, err)
		f.drain()
		steps, _ := f.eng.Steps(f.ctx, f.ws.ID, id)
		var got []string
		for _, s := range steps {
			got = append(got, s.NodeID+"="+string(s.Output))
		}
		want := []string{
			`each={"count":3,"items":["Ada","Grace","Edsger"]}`,
			`greet@each#0={"hi":"Ada","n":0}`,
			`greet@each#1={"hi":"Grace","n":1}`,
			`greet@each#2={"hi":"Edsger","n":2}`,
			`collect={"count":3,"last":"Edsger"}`,
		}
		if f.run(id).Status != engine.StatusCompleted || strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("loop run %s:\n got  %q\n want %q", f.run(id).Status, got, want)
		}

		// An empty list goes straight to the done path.
		id2, err := f.eng.StartRun(f.ctx, w.ID, json.RawMessage(`{"names": []}`), "manual", "")
		must(t, err)
		f.drain()
		steps, _ = f.eng.Steps(f.ctx, f.ws.ID, id2)
		if f.run(id2).Status != engine.StatusCompleted || len(steps) != 2 || steps[1].NodeID != "collect" {
			t.Fatalf("empty loop: %s %+v", f.run(id2).Status, steps)
		}
		// Not a list: a clear step error.
		id3, _ := f.eng.StartRun(f.ctx, w.ID, json.RawMessage(`{"names": 5}`), "manual", "")
		f.drain()
		if r := f.run(id3); r.Status != engine.StatusFailed || r.Error.Code != "LOOP_NOT_A_LIST" {
			t.Fatalf("loop over a number: %s %+v", r.Status, r.Error)
		}
	})
}

// TestInFlightRunKeepsItsVersion: a run started on v1 and still waiting
// finishes on v1 after v2 went live; new runs take v2. Mapping across three
// steps uses $trigger, $steps and $input.
func TestInFlightRunKeepsItsVersion(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		f.eng = engine.New(d, f.wfs, engine.Builtins(f.cat, nil, nil), engine.Expressions(expr.Limits{}), engine.Options{})
		graph := func(label string) workflow.Graph {
			return workflow.Graph{Schema: 1, Trigger: &workflow.Node{ID: "start", Kind: workflow.TriggerManual},
				Nodes: []workflow.Node{
					{ID: "a", Kind: workflow.NodeTransform, Config: json.RawMessage(`{"output": {"first": "{{ $trigger.first }}"}}`)},
					{ID: "wait", Kind: workflow.NodeApproval, Config: json.RawMessage(`{"message": "go?"}`)},
					{ID: "b", Kind: workflow.NodeTransform, Config: json.RawMessage(`{"output": {"last": "{{ $trigger.last }}"}}`)},
					{ID: "c", Kind: workflow.NodeTransform, Config: json.RawMessage(`{"output": {"name": "{{ $steps.a.data.first & ' ' & $input.last }}", "version": "` + label + `"}}`)},
				},
				Edges: []workflow.Edge{{From: "start", To: "a"}, {From: "a", To: "wait"}, {From: "wait", To: "b"}, {From: "b", To: "c"}},
			}
		}
		g1 := graph("v1")
		w, err := f.wfs.Create(f.ctx, f.ws, "Names", "", &g1, "")
		must(t, err)
		_, err = f.wfs.Publish(f.ctx, f.ws, w.ID, "", workflow.Checks{Expressions: expr.CompileJSON})
		must(t, err)
		id, err := f.eng.StartRun(f.ctx, w.ID, json.RawMessage(`{"first": "Ada", "last": "Lovelace"}`), "manual", "")
		must(t, err)
		f.drain()
		if f.run(id).Status != engine.StatusWaiting {
			t.Fatalf("run: %s, want waiting at the approval", f.run(id).Status)
		}
		// v2 goes live while the run waits.
		_, err = f.wfs.SaveDraft(f.ctx, f.ws, w.ID, graph("v2"), "")
		must(t, err)
		_, err = f.wfs.Publish(f.ctx, f.ws, w.ID, "", workflow.Checks{Expressions: expr.CompileJSON})
		must(t, err)
		must(t, f.eng.Decide(f.ctx, f.ws.ID, id, "", true, ""))
		f.drain()
		steps, _ := f.eng.Steps(f.ctx, f.ws.ID, id)
		last := steps[len(steps)-1]
		if f.run(id).Status != engine.StatusCompleted || string(last.Output) != `{"name":"Ada Lovelace","version":"v1"}` {
			t.Fatalf("in-flight run: %s, last output %s", f.run(id).Status, last.Output)
		}
		id2, _ := f.eng.StartRun(f.ctx, w.ID, json.RawMessage(`{"first": "Grace", "last": "Hopper"}`), "manual", "")
		f.drain()
		must(t, f.eng.Decide(f.ctx, f.ws.ID, id2, "", true, ""))
		f.drain()
		steps, _ = f.eng.Steps(f.ctx, f.ws.ID, id2)
		if got := string(steps[len(steps)-1].Output); got != `{"name":"Grace Hopper","version":"v2"}` {
			t.Fatalf("new run: %s, want v2", got)
		}
	})
}

func TestDisabledWorkflowStartsNothing(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		wf := f.publish([]workflow.Node{{ID: "done", Kind: workflow.NodeTransform, Config: json.RawMessage(`{"output": 1}`)}})
		for _, st := range []workflow.Status{workflow.StatusDisabled, workflow.StatusArchived, workflow.StatusPausedSafety} {
			must(t, f.wfs.SetOperatorState(f.ctx, f.ws, wf, st))
			if _, err := f.eng.StartRun(f.ctx, wf, nil, "manual", ""); !errors.Is(err, engine.ErrNotDispatching) {
				t.Fatalf("start while %s: %v", st, err)
			}
		}
		must(t, f.wfs.SetOperatorState(f.ctx, f.ws, wf, ""))
		if _, err := f.eng.StartRun(f.ctx, wf, nil, "manual", ""); err != nil {
			t.Fatalf("start after restoring: %v", err)
		}
	})
}

func TestThroughputBreaker(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		wf := f.publish([]workflow.Node{{ID: "done", Kind: workflow.NodeTransform, Config: json.RawMessage(`{"output": 1}`)}})
		must(t, f.wfs.SetThroughputLimit(f.ctx, f.ws, wf, 3))
		for i := range 3 {
			if _, err := f.eng.StartRun(f.ctx, wf, nil, "manual", ""); err != nil {
				t.Fatalf("run %d under the limit: %v", i+1, err)
			}
		}
		_, err := f.eng.StartRun(f.ctx, wf, nil, "manual", "")
		if e, ok := apperr.As(err); !ok || apperr.Status(err) != 429 || e.Message != engine.MsgBreakerTripped {
			t.Fatalf("run over the limit: %v, want 429 with the breaker message", err)
		}
		w, _ := f.wfs.Get(f.ctx, f.ws, wf)
		if w.Status != workflow.StatusPausedSafety {
			t.Fatalf("status: %s, want paused-safety", w.Status)
		}
		if _, err := f.eng.StartRun(f.ctx, wf, nil, "manual", ""); !errors.Is(err, engine.ErrNotDispatching) {
			t.Fatalf("run while paused: %v", err)
		}
		// Cleared, with the limit raised: runs start again.
		must(t, f.wfs.SetThroughputLimit(f.ctx, f.ws, wf, 100))
		must(t, f.wfs.SetOperatorState(f.ctx, f.ws, wf, ""))
		if _, err := f.eng.StartRun(f.ctx, wf, nil, "manual", ""); err != nil {
			t.Fatalf("run after clearing: %v", err)
		}
	})
}

// TestActionsRefuseWrongStates: Resume only paused runs, Replay only
// finished ones, Cancel only unfinished ones, Pause only moving ones — each
// refusal a 409 with a clear message.
func TestActionsRefuseWrongStates(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		wf := f.publish([]workflow.Node{{ID: "ok", Kind: workflow.NodeApproval, Config: json.RawMessage(`{"message": "go?"}`)}})
		start := func() string {
			id, err := f.eng.StartRun(f.ctx, wf, nil, "manual", "")
			must(t, err)
			return id
		}
		pending := start()
		waiting := start()
		f.drain() // both are now waiting for approval
		pending = start()
		paused := start()
		must(t, f.eng.Pause(f.ctx, f.ws.ID, paused, ""))
		completed := start()
		f.drain()
		must(t, f.eng.Decide(f.ctx, f.ws.ID, completed, "", true, ""))
		f.drain()
		cancelled := start()
		must(t, f.eng.Cancel(f.ctx, f.ws.ID, cancelled, ""))
		if s := f.run(completed).Status; s != engine.StatusCompleted {
			t.Fatalf("setup: completed run is %s", s)
		}
		noConn := func(context.Context, string) (string, error) { return "active", nil }
		tests := []struct {
			name string
			do   func(id string) error
			id   string
			want string
		}{
			{"resume a waiting run", func(id string) error { return f.eng.Resume(f.ctx, f.ws.ID, id, "", noConn) }, waiting, "Only a paused run can be resumed"},
			{"resume a completed run", func(id string) error { return f.eng.Resume(f.ctx, f.ws.ID, id, "", noConn) }, completed, "Only a paused run can be resumed"},
			{"replay a pending run", func(id string) error { _, err := f.eng.Replay(f.ctx, f.ws.ID, id, ""); return err }, pending, "Only a finished run (completed, failed or cancelled) can be replayed"},
			{"replay a paused run", func(id string) error { _, err := f.eng.Replay(f.ctx, f.ws.ID, id, ""); return err }, paused, "Only a finished run (completed, failed or cancelled) can be replayed"},
			{"cancel a completed run", func(id string) error { return f.eng.Cancel(f.ctx, f.ws.ID, id, "") }, completed, "This run has already finished"},
			{"cancel a cancelled run", func(id string) error { return f.eng.Cancel(f.ctx, f.ws.ID, id, "") }, cancelled, "This run has already finished"},
			{"pause a paused run", func(id string) error { return f.eng.Pause(f.ctx, f.ws.ID, id, "") }, paused, "A paused run cannot be paused"},
			{"pause a completed run", func(id string) error { return f.eng.Pause(f.ctx, f.ws.ID, id, "") }, completed, "A completed run cannot be paused"},
			{"approve a paused run", func(id string) error { return f.eng.Decide(f.ctx, f.ws.ID, id, "", true, "") }, paused, "This run is not waiting for an approval"},
		}
		for _, tt := range tests {
			err := tt.do(tt.id)
			e, ok := apperr.As(err)
			if !ok || apperr.Status(err) != 409 || e.Message != tt.want {
				t.Errorf("%s: got %v, want 409 %q", tt.name, err, tt.want)
			}
		}
		// And the right states work.
		must(t, f.eng.Resume(f.ctx, f.ws.ID, paused, "", noConn))
		if _, err := f.eng.Replay(f.ctx, f.ws.ID, cancelled, ""); err != nil {
			t.Fatalf("replay a cancelled run: %v", err)
		}
	})
}
