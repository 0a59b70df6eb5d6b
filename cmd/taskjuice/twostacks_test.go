package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"taskjuice/internal/catalog"
	"taskjuice/internal/connection"
	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
	"taskjuice/internal/engine"
	"taskjuice/internal/expr"
	"taskjuice/internal/trigger"
	"taskjuice/internal/workflow"
)

// stackStarter counts the runs one stack's poller started.
type stackStarter struct {
	trigger.Starter
	n atomic.Int64
}

func (c *stackStarter) StartRun(ctx context.Context, workflowID string, payload json.RawMessage, source, dedupKey string) (string, error) {
	id, err := c.Starter.StartRun(ctx, workflowID, payload, source, dedupKey)
	if err == nil {
		c.n.Add(1)
	}
	return id, err
}

// pollStack is one TaskJuice process's share of the work: its own database
// handle, connection service and refresher, engine (with its workers) and
// poller, each under its own owner name.
type pollStack struct {
	d       *db.DB
	wfs     *workflow.Service
	eng     *engine.Engine
	poller  *trigger.Poller
	started *stackStarter
}

func newPollStack(t *testing.T, b *refreshBench, dsn, owner string, interval time.Duration, log *slog.Logger) *pollStack {
	t.Helper()
	d, err := db.Open(context.Background(), dsn)
	if err != nil {
		t.Fatalf("open database: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	conns := connection.NewService(d, b.keys)
	refresh := connection.NewRefresher(conns, connection.CatalogOAuth(b.cat, benchRedirectURL),
		connection.RefresherOptions{HTTPClient: b.hc, Log: log})
	api := connection.NewAppClient(conns, refresh, b.cat, b.hc)
	s := &pollStack{d: d, wfs: workflow.NewService(d)}
	s.eng = engine.New(d, s.wfs, engine.Builtins(b.cat, api, b.hc), engine.Expressions(expr.Limits{}),
		engine.Options{Owner: owner, Poll: 50 * time.Millisecond, Workers: 2, Log: log})
	s.started = &stackStarter{Starter: s.eng}
	s.poller = trigger.NewPoller(d, s.started, api, conns, b.cat,
		trigger.PollerOptions{Owner: owner, MinInterval: interval, DefaultInterval: interval, Batch: 25, Log: log})
	return s
}

// pollFleet is 200 published app triggers of one sandbox on one
// PostgreSQL database, for several TaskJuice stacks to poll at once.
type pollFleet struct {
	dsn       string
	d         *db.DB
	b         *refreshBench
	byChannel map[string][]string // workflow ids by the channel they watch
}

const (
	fleetTriggers   = 200
	fleetPerChannel = 3
	fleetInterval   = time.Second
)

var fleetChannels = []string{"general", "random", "clients"}

// newPollFleet creates the database, the sandbox (with the "Bench"
// account), a connection to it and the published workflows, registered as
// serve does when a version goes live; it skips without PostgreSQL.
func newPollFleet(t *testing.T, ctx context.Context) *pollFleet {
	t.Helper()
	base := os.Getenv(dbtest.PostgresEnv)
	if base == "" {
		t.Skip(dbtest.PostgresEnv + " not set")
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	f := &pollFleet{dsn: dbtest.NewPostgresSchema(t, base), byChannel: map[string][]string{}}
	d, err := db.Open(ctx, f.dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if _, err := d.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	f.d = d
	if f.b, err = newRefreshBench(ctx, d, log); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.b.close)
	tok, err := f.b.consentAs(ctx, "Bench")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := f.b.conns.CreateWithCredential(ctx, f.b.ws, connection.New{AppKey: catalog.SandboxKey, Label: "Sandbox Chat", Status: connection.StatusActive,
		OwnerKind: connection.OwnerWorkspace}, connection.Credential{OAuth: connection.FromOAuth2(tok)}, connection.System)
	if err != nil {
		t.Fatal(err)
	}
	wfs := workflow.NewService(d)
	// Registering only: this poller never ticks.
	reg := trigger.NewPoller(d, nil, nil, f.b.conns, f.b.cat, trigger.PollerOptions{MinInterval: fleetInterval})
	post, _ := json.Marshal(map[string]any{"output": map[string]any{"text": "{{ $trigger.text }}"}})
	for i := range fleetTriggers {
		channel := fleetChannels[i%len(fleetChannels)]
		cfg := workflow.AppTriggerConfig{App: catalog.SandboxKey, Trigger: "new-message", Inputs: map[string]string{"channel": channel}}
		raw, _ := json.Marshal(cfg)
		g := workflow.Graph{Schema: 1,
			Trigger: &workflow.Node{ID: "message", Kind: workflow.TriggerApp, Config: raw, Connection: &workflow.Binding{ID: conn.ID}},
			Nodes:   []workflow.Node{{ID: "copy", Kind: workflow.NodeTransform, Config: post}},
			Edges:   []workflow.Edge{{From: "message", To: "copy"}}}
		wf, err := wfs.Create(ctx, f.b.ws, fmt.Sprintf("Trigger %d", i+1), "", &g, "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := wfs.Publish(ctx, f.b.ws, wf.ID, "", workflow.Checks{}); err != nil {
			t.Fatal(err)
		}
		if err := reg.Sync(ctx, trigger.PollTrigger{WorkflowID: wf.ID, NodeID: "message", App: cfg.App, Trigger: cfg.Trigger,
			ConnectionID: conn.ID, Inputs: cfg.Inputs, Interval: fleetInterval}); err != nil {
			t.Fatal(err)
		}
		f.byChannel[channel] = append(f.byChannel[channel], wf.ID)
	}
	return f
}

func (f *pollFleet) count(t *testing.T, q string, args ...any) int {
	t.Helper()
	var n int
	if err := f.d.Read().QueryRowContext(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

func waitFor(t *testing.T, what string, deadline time.Duration, done func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !done() {
		if time.Now().After(end) {
			t.Fatalf("%s: not within %s", what, deadline)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// postAndWait waits for every trigger's first poll, posts new messages in
// every channel and waits for their runs; it returns how many runs that
// is.
func (f *pollFleet) postAndWait(t *testing.T, primeWithin, runsWithin time.Duration) int {
	t.Helper()
	// Every trigger's first poll records where its channel stands.
	waitFor(t, "every trigger primed", primeWithin, func() bool {
		return f.count(t, `SELECT count(*) FROM poll_triggers WHERE primed`) == fleetTriggers
	})
	want := 0
	for _, ch := range fleetChannels {
		for i := range fleetPerChannel {
			if _, err := f.b.sb.Post("Bench", ch, fmt.Sprintf("%s news %d", ch, i+1)); err != nil {
				t.Fatal(err)
			}
		}
		want += fleetPerChannel * len(f.byChannel[ch])
	}
	waitFor(t, fmt.Sprintf("%d runs", want), runsWithin, func() bool {
		return f.count(t, `SELECT count(*) FROM runs WHERE source = 'poll'`) >= want
	})
	return want
}

// check asserts exactly one run per new item per workflow: none missed,
// none twice.
func (f *pollFleet) check(t *testing.T, want int) {
	t.Helper()
	if got := f.count(t, `SELECT count(*) FROM runs WHERE source = 'poll'`); got != want {
		t.Fatalf("runs: %d, want %d", got, want)
	}
	if dup := f.count(t, `SELECT count(*) FROM (SELECT workflow_id, dedup_key FROM runs WHERE source = 'poll' GROUP BY workflow_id, dedup_key HAVING count(*) > 1) x`); dup != 0 {
		t.Fatalf("%d items started more than one run", dup)
	}
	for ch, wfs := range f.byChannel {
		for _, wf := range wfs {
			if n := f.count(t, `SELECT count(DISTINCT dedup_key) FROM runs WHERE workflow_id = $1 AND source = 'poll'`, wf); n != fleetPerChannel {
				t.Fatalf("workflow on #%s: %d runs, want %d", ch, n, fleetPerChannel)
			}
		}
	}
}

// Two TaskJuice stacks in this process, on one PostgreSQL database, poll
// the 200 triggers: each its own database handle, engine with workers and
// poller under its own owner name.
func TestTwoStacksPoll200TriggersOnPostgres(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	f := newPollFleet(t, ctx)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	stacks := []*pollStack{newPollStack(t, f.b, f.dsn, "stack-a", fleetInterval, log), newPollStack(t, f.b, f.dsn, "stack-b", fleetInterval, log)}
	run, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, s := range stacks {
		wg.Add(2)
		go func() { defer wg.Done(); _ = s.eng.Run(run) }()
		go func() { defer wg.Done(); _ = s.poller.Run(run, 100*time.Millisecond) }()
	}
	defer func() { stop(); wg.Wait() }()

	want := f.postAndWait(t, 30*time.Second, 40*time.Second)
	stop()
	wg.Wait()
	f.check(t, want)
	a, b := stacks[0].started.n.Load(), stacks[1].started.n.Load()
	if a+b != int64(want) {
		t.Fatalf("the stacks started %d + %d runs, want %d in all", a, b, want)
	}
	t.Logf("runs started: stack a %d, stack b %d", a, b)
}

// Two "taskjuice serve" on one PostgreSQL database and one external
// sandbox (--external-sandbox-url) poll the 200 triggers.
func TestTwoServesPoll200TriggersOnPostgres(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	f := newPollFleet(t, ctx)
	getenv := func(k string) string {
		switch k {
		case "TASKJUICE_DATABASE_URL":
			return f.dsn
		case "TASKJUICE_SECRET_KEY":
			return f.b.keyText
		case catalog.ClientSecretEnv(catalog.SandboxKey):
			return f.b.secret
		}
		return ""
	}
	sandboxURL := f.b.sbURL
	for range 2 {
		_, _, stop := startServe(t, []string{"--data-dir", t.TempDir(), "--no-demo", "--external-sandbox-url", sandboxURL}, getenv)
		defer stop()
	}
	f.check(t, f.postAndWait(t, 30*time.Second, 40*time.Second))
}
