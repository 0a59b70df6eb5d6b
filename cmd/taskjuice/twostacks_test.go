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

// Two TaskJuice stacks on one PostgreSQL database poll 200 published app
// triggers of the same sandbox: every new message starts exactly one run
// of each workflow whose trigger watches its channel — none missed, none
// twice — while both poll at once.
func TestTwoStacksPoll200TriggersOnPostgres(t *testing.T) {
	base := os.Getenv(dbtest.PostgresEnv)
	if base == "" {
		t.Skip(dbtest.PostgresEnv + " not set")
	}
	const triggers, perChannel = 200, 3
	const interval = time.Second
	channels := []string{"general", "random", "clients"}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	dsn := dbtest.NewPostgresSchema(t, base)
	d, err := db.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := newRefreshBench(ctx, d, log)
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()
	tok, err := b.consentAs(ctx, "Bench")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := b.conns.CreateWithCredential(ctx, b.ws, connection.New{AppKey: catalog.SandboxKey, Label: "Sandbox Chat", Status: connection.StatusActive,
		OwnerKind: connection.OwnerWorkspace}, connection.Credential{OAuth: connection.FromOAuth2(tok)}, connection.System)
	if err != nil {
		t.Fatal(err)
	}
	stacks := []*pollStack{newPollStack(t, b, dsn, "stack-a", interval, log), newPollStack(t, b, dsn, "stack-b", interval, log)}

	// 200 published workflows, their triggers spread over the channels,
	// registered as serve does when a version goes live.
	byChannel := map[string][]string{}
	post, _ := json.Marshal(map[string]any{"output": map[string]any{"text": "{{ $trigger.text }}"}})
	for i := range triggers {
		s := stacks[i%2]
		channel := channels[i%len(channels)]
		cfg := workflow.AppTriggerConfig{App: catalog.SandboxKey, Trigger: "new-message", Inputs: map[string]string{"channel": channel}}
		raw, _ := json.Marshal(cfg)
		g := workflow.Graph{Schema: 1,
			Trigger: &workflow.Node{ID: "message", Kind: workflow.TriggerApp, Config: raw, Connection: &workflow.Binding{ID: conn.ID}},
			Nodes:   []workflow.Node{{ID: "copy", Kind: workflow.NodeTransform, Config: post}},
			Edges:   []workflow.Edge{{From: "message", To: "copy"}}}
		wf, err := s.wfs.Create(ctx, b.ws, fmt.Sprintf("Trigger %d", i+1), "", &g, "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.wfs.Publish(ctx, b.ws, wf.ID, "", workflow.Checks{}); err != nil {
			t.Fatal(err)
		}
		if err := s.poller.Sync(ctx, trigger.PollTrigger{WorkflowID: wf.ID, NodeID: "message", App: cfg.App, Trigger: cfg.Trigger,
			ConnectionID: conn.ID, Inputs: cfg.Inputs, Interval: interval}); err != nil {
			t.Fatal(err)
		}
		byChannel[channel] = append(byChannel[channel], wf.ID)
	}

	// Both stacks run: engine workers and pollers.
	run, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, s := range stacks {
		wg.Add(2)
		go func() { defer wg.Done(); _ = s.eng.Run(run) }()
		go func() { defer wg.Done(); _ = s.poller.Run(run, 100*time.Millisecond) }()
	}
	defer func() { stop(); wg.Wait() }()

	count := func(q string, args ...any) int {
		t.Helper()
		var n int
		if err := d.Read().QueryRowContext(ctx, q, args...).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}
	waitFor := func(what string, deadline time.Duration, done func() bool) {
		t.Helper()
		end := time.Now().Add(deadline)
		for !done() {
			if time.Now().After(end) {
				t.Fatalf("%s: not within %s", what, deadline)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// Every trigger's first poll records where its channel stands.
	waitFor("every trigger primed", 30*time.Second, func() bool {
		return count(`SELECT count(*) FROM poll_triggers WHERE primed`) == triggers
	})

	// New messages in every channel while both stacks poll.
	want := 0
	for _, ch := range channels {
		for i := range perChannel {
			if _, err := b.sb.Post("Bench", ch, fmt.Sprintf("%s news %d", ch, i+1)); err != nil {
				t.Fatal(err)
			}
		}
		want += perChannel * len(byChannel[ch])
	}
	waitFor(fmt.Sprintf("%d runs", want), 40*time.Second, func() bool {
		return count(`SELECT count(*) FROM runs WHERE source = 'poll'`) >= want
	})

	// Exactly one run per new item per workflow: none missed, none twice.
	stop()
	wg.Wait()
	if got := count(`SELECT count(*) FROM runs WHERE source = 'poll'`); got != want {
		t.Fatalf("runs: %d, want %d", got, want)
	}
	if dup := count(`SELECT count(*) FROM (SELECT workflow_id, dedup_key FROM runs WHERE source = 'poll' GROUP BY workflow_id, dedup_key HAVING count(*) > 1) x`); dup != 0 {
		t.Fatalf("%d items started more than one run", dup)
	}
	for ch, wfs := range byChannel {
		for _, wf := range wfs {
			if n := count(`SELECT count(DISTINCT dedup_key) FROM runs WHERE workflow_id = $1 AND source = 'poll'`, wf); n != perChannel {
				t.Fatalf("workflow on #%s: %d runs, want %d", ch, n, perChannel)
			}
		}
	}
	a, bb := stacks[0].started.n.Load(), stacks[1].started.n.Load()
	if a+bb != int64(want) {
		t.Fatalf("the stacks started %d + %d runs, want %d in all", a, bb, want)
	}
	t.Logf("runs started: stack a %d, stack b %d", a, bb)
}
