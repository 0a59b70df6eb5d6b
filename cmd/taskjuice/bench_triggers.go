package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"taskjuice/internal/catalog"
	"taskjuice/internal/connection"
	"taskjuice/internal/engine"
	"taskjuice/internal/expr"
	"taskjuice/internal/trigger"
	"taskjuice/internal/workflow"
)

// Targets of the app-trigger poller, from its acceptance criteria.
const (
	triggerIdleTarget  = 5 * time.Millisecond
	triggerPollsTarget = 500.0 // polls per second against the local sandbox
)

type benchTriggersFlags struct {
	benchDB
	triggers, items, passes, workers, deliveries int
}

func benchTriggers(ctx context.Context, args []string, e env) error {
	var f benchTriggersFlags
	fs := flag.NewFlagSet("taskjuice bench triggers", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	f.flags(fs, 30*time.Minute)
	fs.IntVar(&f.triggers, "triggers", 10000, "published workflows whose app trigger polls Sandbox Chat")
	fs.IntVar(&f.items, "items", 10000, "new messages one trigger turns into runs")
	fs.IntVar(&f.passes, "passes", 200, "timed scheduler passes with nothing due")
	fs.IntVar(&f.workers, "workers", 8, "pollers ticking at once (as several processes or workers would)")
	fs.IntVar(&f.deliveries, "deliveries", 1000, "messages an instant trigger receives, each a signed delivery timed until its run is recorded")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if f.triggers < 1 || f.items < 1 || f.passes < 1 || f.workers < 1 || f.deliveries < 1 {
		return errors.New("--triggers, --items, --passes, --workers and --deliveries must be at least 1")
	}
	ctx, d, done, err := f.open(ctx, fs, e, "triggers")
	if err != nil {
		return err
	}
	defer done()
	b, err := newRefreshBench(ctx, d, benchLog(e))
	if err != nil {
		return err
	}
	defer b.close()
	t := &triggersBench{refreshBench: b, wfs: workflow.NewService(d), log: benchLog(e)}
	t.eng = engine.New(d, t.wfs, engine.Builtins(b.cat, connection.NewAppClient(b.conns, b.refresh, b.cat, b.hc), b.hc),
		engine.Expressions(expr.Limits{}), engine.Options{Log: benchLog(e)})
	// A clock the bench moves: a pass "an hour later" finds every trigger
	// due without waiting an hour.
	t.now = time.Now().UTC()
	t.poller = trigger.NewPoller(d, t.eng, connection.NewAppClient(b.conns, b.refresh, b.cat, b.hc), b.conns, b.cat,
		trigger.PollerOptions{MinInterval: time.Second, Batch: 100, Now: t.clock, Log: benchLog(e)})
	return t.run(ctx, e.stdout, f)
}

type triggersBench struct {
	*refreshBench
	wfs    *workflow.Service
	eng    *engine.Engine
	poller *trigger.Poller
	log    *slog.Logger
	mu     sync.Mutex
	now    time.Time
}

func (t *triggersBench) clock() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.now
}

func (t *triggersBench) advance(d time.Duration) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.now = t.now.Add(d)
	return t.now
}

func (t *triggersBench) run(ctx context.Context, out io.Writer, f benchTriggersFlags) error {
	tok, err := t.consentAs(ctx, "Bench")
	if err != nil {
		return fmt.Errorf("consent: %w", err)
	}
	conn, err := t.conns.CreateWithCredential(ctx, t.ws, connection.New{AppKey: catalog.SandboxKey, Label: "Sandbox Chat", Status: connection.StatusActive,
		OwnerKind: connection.OwnerWorkspace}, connection.Credential{OAuth: connection.FromOAuth2(tok)}, connection.System)
	if err != nil {
		return err
	}
	start := time.Now()
	ids, err := t.publish(ctx, conn.ID, f.triggers)
	if err != nil {
		return err
	}
	took := time.Since(start)
	fmt.Fprintf(out, "published %d workflows whose app trigger polls Sandbox Chat (one on #random, the rest on #general): %s, %.0f/s\n",
		len(ids), round(took), float64(len(ids))/took.Seconds())

	// Every trigger's first poll records where its channel stands.
	polls, took, err := t.tickAll(ctx, f.workers, t.clock())
	if err != nil {
		return err
	}
	rate := float64(polls) / took.Seconds()
	pollsOK := polls == len(ids) && rate >= triggerPollsTarget
	fmt.Fprintf(out, "first poll of every trigger, %d pollers at once: %d polls of the sandbox's messages API in %s, %.0f polls/s (target >= %.0f): %s\n",
		f.workers, polls, round(took), rate, triggerPollsTarget, verdict(pollsOK))

	idleOK, p99, err := t.idlePasses(ctx, out, len(ids), f.passes)
	if err != nil {
		return err
	}

	runsOK, runs, took, err := t.itemsToRuns(ctx, ids[0], f)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%d new messages in #random -> %d runs of its workflow, each message once, in %s (%.0f runs/s): %s\n",
		f.items, runs, round(took), float64(runs)/took.Seconds(), verdict(runsOK))

	inst, err := t.instant(ctx, conn.ID, f.deliveries)
	if err != nil {
		return fmt.Errorf("instant trigger: %w", err)
	}
	inst.print(out, f.deliveries)

	ok := pollsOK && idleOK && runsOK && inst.ok
	writeJSONLine(out, map[string]any{"bench": "triggers", "database": string(t.d.Dialect()), "triggers": len(ids), "polls": polls,
		"polls_per_second": roundTo(rate, 1), "idle_pass_p99_ms": roundTo(float64(p99)/float64(time.Millisecond), 3),
		"items": f.items, "runs": runs,
		"instant_deliveries": inst.deliveries, "instant_runs": inst.runs, "instant_p50_ms": roundTo(msf(inst.p50), 3),
		"instant_p95_ms": roundTo(msf(inst.p95), 3), "instant_p99_ms": roundTo(msf(inst.p99), 3), "pass": ok})
	if !ok {
		return fmt.Errorf("bench triggers: %w", errTargetMissed)
	}
	return nil
}

// publish creates and publishes n workflows whose trigger polls Sandbox
// Chat every hour, and registers each with the poller as serve does when a
// version goes live. The first polls #random, the others #general.
func (t *triggersBench) publish(ctx context.Context, connID string, n int) ([]string, error) {
	post, _ := json.Marshal(map[string]any{"output": map[string]any{"text": "{{ $trigger.text }}"}})
	ids := make([]string, 0, n)
	for i := range n {
		channel := "general"
		if i == 0 {
			channel = "random"
		}
		cfg := workflow.AppTriggerConfig{App: catalog.SandboxKey, Trigger: "new-message", Inputs: map[string]string{"channel": channel}, IntervalSeconds: 3600}
		raw, _ := json.Marshal(cfg)
		g := workflow.Graph{Schema: 1,
			Trigger: &workflow.Node{ID: "message", Kind: workflow.TriggerApp, Config: raw, Connection: &workflow.Binding{ID: connID}},
			Nodes:   []workflow.Node{{ID: "copy", Kind: workflow.NodeTransform, Config: post}},
			Edges:   []workflow.Edge{{From: "message", To: "copy"}}}
		wf, err := t.wfs.Create(ctx, t.ws, fmt.Sprintf("Trigger %d", i+1), "", &g, "")
		if err != nil {
			return nil, fmt.Errorf("create workflow %d: %w", i+1, err)
		}
		if _, err := t.wfs.Publish(ctx, t.ws, wf.ID, "", workflow.Checks{}); err != nil {
			return nil, fmt.Errorf("publish workflow %d: %w", i+1, err)
		}
		if err := t.poller.Sync(ctx, trigger.PollTrigger{WorkflowID: wf.ID, NodeID: "message", App: cfg.App, Trigger: cfg.Trigger,
			ConnectionID: connID, Inputs: cfg.Inputs, Interval: time.Hour}); err != nil {
			return nil, err
		}
		ids = append(ids, wf.ID)
	}
	return ids, nil
}

// tickAll lets workers pollers tick at now until a pass finds nothing due,
// and counts the polls (each poll moves its trigger's next poll an hour on).
func (t *triggersBench) tickAll(ctx context.Context, workers int, now time.Time) (int, time.Duration, error) {
	before, err := t.polled(ctx)
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				due, err := t.dueAt(ctx, now)
				if err != nil {
					errs <- err
					return
				}
				if due == 0 {
					return
				}
				if _, err := t.poller.Tick(ctx, now); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return 0, 0, err
	}
	after, err := t.polled(ctx)
	return after - before, took, err
}

func (t *triggersBench) dueAt(ctx context.Context, now time.Time) (int, error) {
	var n int
	err := t.d.Read().QueryRowContext(ctx, `SELECT count(*) FROM poll_triggers WHERE NOT held AND next_poll_at <= $1`, now).Scan(&n)
	return n, err
}

// polled counts the polls made so far: each one sets last_poll_at.
func (t *triggersBench) polled(ctx context.Context) (int, error) {
	var n int
	err := t.d.Read().QueryRowContext(ctx, `SELECT count(*) FROM poll_triggers WHERE last_poll_at IS NOT NULL AND primed`).Scan(&n)
	return n, err
}

// idlePasses times scheduler passes that find nothing due.
func (t *triggersBench) idlePasses(ctx context.Context, out io.Writer, n, passes int) (bool, time.Duration, error) {
	now := t.clock()
	for range 5 {
		if _, err := t.poller.Tick(ctx, now); err != nil {
			return false, 0, err
		}
	}
	times := make([]time.Duration, 0, passes)
	for range passes {
		start := time.Now()
		got, err := t.poller.Tick(ctx, now)
		took := time.Since(start)
		if err != nil {
			return false, 0, err
		}
		if got != 0 {
			return false, 0, fmt.Errorf("a pass with nothing due started %d runs", got)
		}
		times = append(times, took)
	}
	slices.Sort(times)
	med, p99 := quantile(times, 0.5), quantile(times, 0.99)
	ok := p99 < triggerIdleTarget
	fmt.Fprintf(out, "scheduler pass with nothing due over %d triggers (%d passes): min %s, median %s, p99 %s, max %s (target p99 < %s): %s\n",
		n, passes, ms(times[0]), ms(med), ms(p99), ms(times[len(times)-1]), ms(triggerIdleTarget), verdict(ok))
	return ok, p99, nil
}

// itemsToRuns posts the messages to #random, makes its trigger due and
// polls until it has read them all; every message must start exactly one
// run, keyed by its id.
func (t *triggersBench) itemsToRuns(ctx context.Context, workflowID string, f benchTriggersFlags) (bool, int, time.Duration, error) {
	if _, err := t.sb.Emit("Bench", "random", "Lead", f.items); err != nil {
		return false, 0, 0, err
	}
	now := t.advance(2 * time.Hour) // every trigger is due; only #random has news
	start := time.Now()
	for {
		due, err := t.dueAt(ctx, now)
		if err != nil {
			return false, 0, 0, err
		}
		if due == 0 {
			break
		}
		if _, _, err := t.tickAll(ctx, f.workers, now); err != nil {
			return false, 0, 0, err
		}
	}
	took := time.Since(start)
	var runs, distinct int
	err := t.d.Read().QueryRowContext(ctx, `SELECT count(*), count(DISTINCT dedup_key) FROM runs WHERE workflow_id = $1`, workflowID).Scan(&runs, &distinct)
	if err != nil {
		return false, 0, 0, err
	}
	return runs == f.items && distinct == runs, runs, took, nil
}
