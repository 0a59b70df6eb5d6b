package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"taskjuice/internal/catalog"
	"taskjuice/internal/connection"
	"taskjuice/internal/db"
	"taskjuice/internal/engine"
	"taskjuice/internal/expr"
	"taskjuice/internal/workflow"
)

// What held runs are held to: back to running soon after the reconnect,
// and costing rows, not memory, while they wait.
const (
	resumeTarget = 2 * time.Second
	rssTargetMB  = 300.0
)

type benchResumeFlags struct {
	benchDB
	runs, held, workers int
	idle                time.Duration
	drive               bool
}

func benchResume(ctx context.Context, args []string, e env) error {
	var f benchResumeFlags
	fs := flag.NewFlagSet("taskjuice bench resume", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	f.flags(fs, 30*time.Minute)
	fs.IntVar(&f.runs, "runs", 10000, "agent runs held for reauthorization on the connection that is reconnected")
	fs.IntVar(&f.held, "held", 0, "more agent runs held, on another connection that stays broken, for the memory check (e.g. 100000)")
	fs.IntVar(&f.workers, "workers", 32, "the engine's workers (engine.Options.Workers)")
	fs.DurationVar(&f.idle, "idle", 3*time.Second, "how long the engine's worker loop runs over the held runs before the memory is read")
	fs.BoolVar(&f.drive, "drive", true, "after the resume, let the engine take the resumed runs on: each makes its held tool call and waits for its next decision")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case f.runs < 1:
		return errors.New("--runs must be at least 1")
	case f.held < 0:
		return errors.New("--held must not be negative")
	case f.workers < 1:
		return errors.New("--workers must be at least 1")
	}
	ctx, d, done, err := f.open(ctx, fs, e, "resume")
	if err != nil {
		return err
	}
	defer done()
	log, out := benchLog(e), e.stdout
	b, err := newRefreshBench(ctx, d, log)
	if err != nil {
		return err
	}
	defer b.close()
	r := &resumeBench{refreshBench: b, wfs: workflow.NewService(d)}
	r.eng = engine.New(d, r.wfs, engine.Builtins(b.cat, connection.NewAppClient(b.conns, b.refresh, b.cat, b.hc), b.hc),
		engine.Expressions(expr.Limits{}), engine.Options{Workers: f.workers, Log: log.With("component", "engine")})
	return r.run(ctx, out, f)
}

// resumeBench adds agents and the engine to the refresh bench's world.
type resumeBench struct {
	*refreshBench
	wfs *workflow.Service
	eng *engine.Engine
}

// heldSet is one connection and the agent runs held on it.
type heldSet struct {
	account, conn, agent, template string
}

func (r *resumeBench) run(ctx context.Context, out io.Writer, f benchResumeFlags) error {
	// One run per connection is held the way a real one is: started, its
	// decision handed in, its tool call made after the grant was revoked at
	// the sandbox. The others are copies of the rows the engine wrote for
	// it, under new ids: writing them takes far less time than making tens
	// of thousands of failing calls.
	start := time.Now()
	main, err := r.holdOne(ctx, "Bench Chat")
	if err != nil {
		return err
	}
	sets := []heldSet{main}
	if f.held > 0 {
		other, err := r.holdOne(ctx, "Bench Chat (broken)")
		if err != nil {
			return err
		}
		sets = append(sets, other)
	}
	fmt.Fprintf(out, "held one agent run per connection through the engine (decision, tool call, grant revoked at the sandbox: paused for reauth): %s\n", round(time.Since(start)))
	start = time.Now()
	if err := cloneHeld(ctx, r.d, main.template, f.runs-1); err != nil {
		return err
	}
	if f.held > 0 {
		if err := cloneHeld(ctx, r.d, sets[1].template, f.held-1); err != nil {
			return err
		}
	}
	took := time.Since(start)
	total := f.runs + f.held
	fmt.Fprintf(out, "copied its rows into %d held agent runs (run, steps, pending reauthorization, events): %s, %.0f/s\n",
		total, round(took), float64(total)/took.Seconds())
	if n, err := r.count(ctx, main.agent, "paused"); err != nil || n != f.runs {
		return fmt.Errorf("held runs on the connection: got %d, want %d (%v)", n, f.runs, err)
	}

	rss, heap, err := r.idleMemory(ctx, f)
	if err != nil {
		return err
	}
	rssOK := rss < rssTargetMB
	fmt.Fprintf(out, "resident memory with %d held runs in the database, the engine's worker loop running for %s: %.1f MB (Go heap in use %.1f MB) (target < %.0f MB): %s\n",
		total, f.idle, rss, heap, rssTargetMB, verdict(rssOK))

	resumed, consume, back, err := r.reconnect(ctx, main, f.runs)
	if err != nil {
		return err
	}
	resumeOK := resumed == f.runs && back <= resumeTarget
	fmt.Fprintf(out, "reconnected: ConsumeReauthorizations resumed %d runs in %s; all %d running again %s after the reconnect (target %s): %s\n",
		resumed, round(consume), f.runs, round(back), resumeTarget, verdict(resumeOK))
	if f.held > 0 {
		if n, err := r.count(ctx, sets[1].agent, "paused"); err != nil || n != f.held {
			return fmt.Errorf("runs held on the connection still broken: got %d, want %d (%v)", n, f.held, err)
		}
		fmt.Fprintf(out, "the %d runs held on the other connection are still paused\n", f.held)
	}
	driveOK := true
	result := map[string]any{
		"bench": "resume", "database": string(r.d.Dialect()), "runs": f.runs, "held": f.held,
		"resume_seconds": roundTo(back.Seconds(), 3), "consume_seconds": roundTo(consume.Seconds(), 3), "resumed": resumed,
		"rss_mb": roundTo(rss, 1), "heap_mb": roundTo(heap, 1),
		"target_resume_seconds": resumeTarget.Seconds(), "target_rss_mb": rssTargetMB,
	}
	if f.drive {
		posted, took, err := r.drive(ctx, main, f)
		if err != nil {
			return err
		}
		driveOK = posted == f.runs
		fmt.Fprintf(out, "the engine took them on: %d held tool calls made (Sandbox Chat posted %d messages), every run waiting for its next decision, in %s: %s\n",
			f.runs, posted, round(took), verdict(driveOK))
		result["drive_seconds"] = roundTo(took.Seconds(), 3)
	}
	ok := rssOK && resumeOK && driveOK
	result["pass"] = ok
	writeJSONLine(out, result)
	if !ok {
		return fmt.Errorf("bench resume: %w", errTargetMissed)
	}
	return nil
}

// holdOne makes a connection with a real grant of the sandbox account, an
// agent whose tool posts through it, and one run of that agent held for
// reauthorization, through the engine.
func (r *resumeBench) holdOne(ctx context.Context, account string) (heldSet, error) {
	s := heldSet{account: account}
	tok, err := r.consentAs(ctx, account)
	if err != nil {
		return s, fmt.Errorf("grant: %w", err)
	}
	c, err := r.conns.CreateWithCredential(ctx, r.ws, connection.New{AppKey: catalog.SandboxKey, Label: account, Status: connection.StatusActive},
		connection.Credential{OAuth: connection.FromOAuth2(tok)}, connection.System)
	if err != nil {
		return s, fmt.Errorf("create connection: %w", err)
	}
	s.conn = c.ID
	cfg, _ := json.Marshal(workflow.AgentConfig{
		Instructions: "Tell the team what happened.",
		Driver:       workflow.DriverCallback,
		Tools:        []workflow.AgentTool{{Name: "post", App: catalog.SandboxKey, Action: "post-message", ConnectionID: c.ID}},
	})
	g := workflow.Graph{Schema: 1, Trigger: &workflow.Node{ID: "start", Kind: workflow.TriggerManual},
		Nodes: []workflow.Node{{ID: "agent", Kind: workflow.NodeAgent, Config: cfg}},
		Edges: []workflow.Edge{{From: "start", To: "agent"}}}
	a, err := r.wfs.CreateAgent(ctx, r.ws, "Helper on "+account, "", g, "")
	if err != nil {
		return s, fmt.Errorf("create agent: %w", err)
	}
	checks := workflow.Checks{Apps: r.cat, Connection: func(id string) (string, string, bool) {
		c, err := r.conns.Get(ctx, r.ws, id)
		return c.AppKey, string(c.Status), err == nil
	}}
	if _, err := r.wfs.Publish(ctx, r.ws, a.ID, "", checks); err != nil {
		return s, fmt.Errorf("publish agent: %w", err)
	}
	s.agent = a.ID
	if s.template, err = r.eng.StartRun(ctx, a.ID, json.RawMessage(`{"ticket": 1}`), "bench", ""); err != nil {
		return s, err
	}
	if err := r.drain(ctx); err != nil {
		return s, err
	}
	if _, err := r.sb.RevokeAccount(account); err != nil {
		return s, fmt.Errorf("revoke at the sandbox: %w", err)
	}
	if err := r.eng.SubmitAgentDecision(ctx, r.ws.ID, s.template, "", postDecision("Held, then resumed")); err != nil {
		return s, fmt.Errorf("decide: %w", err)
	}
	if err := r.drain(ctx); err != nil {
		return s, err
	}
	run, err := r.eng.Get(ctx, r.ws.ID, s.template)
	if err != nil {
		return s, err
	}
	if run.Status != engine.StatusPaused || run.PauseReason != engine.PauseReauth || run.PausedConnectionID != c.ID {
		return s, fmt.Errorf("the agent run after its grant was revoked: %s (%s), want paused for reauth", run.Status, run.PauseReason)
	}
	return s, nil
}

func postDecision(text string) engine.AgentDecision {
	q, _ := json.Marshal(text)
	return engine.AgentDecision{ToolCall: &engine.ToolCall{Tool: "post", Input: map[string]json.RawMessage{
		"channel": json.RawMessage(`"general"`), "text": q}}}
}

// drain works on due runs until there are none.
func (r *resumeBench) drain(ctx context.Context) error {
	for range 100 {
		did, err := r.eng.Work(ctx)
		if err != nil {
			return err
		}
		if !did {
			return nil
		}
	}
	return errors.New("the engine kept finding work")
}

func (r *resumeBench) count(ctx context.Context, agent, status string) (int, error) {
	var n int
	err := r.d.Read().QueryRowContext(ctx, `SELECT count(*) FROM runs WHERE workflow_id = $1 AND status = $2`, agent, status).Scan(&n)
	return n, err
}

// cloneHeld copies the rows the engine wrote for the held run template n
// times, each copy under new ids: the run, its steps (whose idempotency
// keys name their run), its pending reauthorization and its events.
func cloneHeld(ctx context.Context, d *db.DB, template string, n int) error {
	const perStatement = 500
	ids := make([]string, n)
	for i := range ids {
		ids[i] = db.NewID()
	}
	tables := []struct{ name, run string }{{"runs", "id"}, {"run_steps", "run_id"}, {"pending_reauths", "run_id"}, {"run_events", "run_id"}}
	cols := map[string][]string{}
	rowIDs := map[string][]string{} // the template's rows, by id, of tables with their own ids
	for _, t := range tables {
		c, err := columnsOf(ctx, d, t.name)
		if err != nil {
			return err
		}
		cols[t.name] = c
		if t.run != "id" && slices.Contains(c, "id") {
			if rowIDs[t.name], err = idsOf(ctx, d, t.name, template); err != nil {
				return err
			}
		}
	}
	for chunk := range slices.Chunk(ids, perStatement) {
		err := d.InTx(ctx, func(tx db.Querier) error {
			for _, t := range tables {
				var query string
				args := []any{template}
				var values strings.Builder
				arg := func(v string) string {
					args = append(args, v)
					return "$" + strconv.Itoa(len(args))
				}
				own := rowIDs[t.name]
				for _, run := range chunk {
					if len(own) == 0 {
						fmt.Fprintf(&values, "(%s), ", arg(run))
						continue
					}
					for _, row := range own {
						fmt.Fprintf(&values, "(%s, %s, %s), ", arg(run), arg(db.NewID()), arg(row))
					}
				}
				var sel []string
				for _, c := range cols[t.name] {
					switch {
					case c == t.run:
						sel = append(sel, "v.column1")
					case c == "id":
						sel = append(sel, "v.column2")
					case c == "idempotency_key":
						sel = append(sel, "replace(t.idempotency_key, $1, v.column1)")
					default:
						sel = append(sel, "t."+c)
					}
				}
				join := "t." + t.run + " = $1"
				if len(own) > 0 {
					join += " AND t.id = v.column3"
				}
				query = fmt.Sprintf(`INSERT INTO %s (%s) SELECT %s FROM %s t JOIN (VALUES %s) AS v ON %s`,
					t.name, strings.Join(cols[t.name], ", "), strings.Join(sel, ", "), t.name, strings.TrimSuffix(values.String(), ", "), join)
				if _, err := tx.ExecContext(ctx, query, args...); err != nil {
					return fmt.Errorf("copy %s: %w", t.name, err)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// columnsOf names a table's columns, whichever database it is in.
func columnsOf(ctx context.Context, d *db.DB, table string) ([]string, error) {
	rows, err := d.Read().QueryContext(ctx, `SELECT * FROM `+table+` WHERE 1 = 0`)
	if err != nil {
		return nil, fmt.Errorf("columns of %s: %w", table, err)
	}
	defer rows.Close()
	return rows.Columns()
}

func idsOf(ctx context.Context, d *db.DB, table, run string) ([]string, error) {
	rows, err := d.Read().QueryContext(ctx, `SELECT id FROM `+table+` WHERE run_id = $1`, run)
	if err != nil {
		return nil, fmt.Errorf("rows of %s: %w", table, err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// idleMemory runs the engine's worker loop over the held runs for a while
// and reads the process's resident memory. The bench's own garbage from
// copying the rows is given back to the system first: it is the bench's,
// not the engine's.
func (r *resumeBench) idleMemory(ctx context.Context, f benchResumeFlags) (rss, heap float64, err error) {
	debug.FreeOSMemory()
	wctx, stop := context.WithCancel(ctx)
	worked := make(chan error, 1)
	go func() { worked <- r.eng.Run(wctx) }()
	select {
	case <-time.After(f.idle):
	case <-ctx.Done():
	}
	rss, err = residentMB()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	stop()
	if werr := <-worked; err == nil {
		err = werr
	}
	return rss, float64(m.HeapInuse) / (1 << 20), err
}

// residentMB reads VmRSS from /proc/self/status.
func residentMB() (float64, error) {
	fh, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("resident memory: %w", err)
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			if err != nil {
				return 0, fmt.Errorf("resident memory: %q: %w", rest, err)
			}
			return kb / 1024, nil
		}
	}
	return 0, errors.New("resident memory: no VmRSS in /proc/self/status")
}

// reconnect reconnects the connection as a person does (a fresh grant
// stored, the connection active again, which raises the reauthorized
// signal), has the engine consume the signal, and times how long until
// every run held on it is running again.
func (r *resumeBench) reconnect(ctx context.Context, s heldSet, runs int) (resumed int, consume, back time.Duration, err error) {
	tok, err := r.consentAs(ctx, s.account)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("grant: %w", err)
	}
	raw, _ := json.Marshal(connection.Credential{OAuth: connection.FromOAuth2(tok)})
	if _, err := r.conns.StoreSecret(ctx, s.conn, raw); err != nil {
		return 0, 0, 0, err
	}
	start := time.Now()
	if _, err := r.conns.Transition(ctx, s.conn, connection.StatusActive, "reconnected", connection.System, nil); err != nil {
		return 0, 0, 0, err
	}
	cstart := time.Now()
	if resumed, err = r.eng.ConsumeReauthorizations(ctx); err != nil {
		return resumed, 0, 0, err
	}
	consume = time.Since(cstart)
	n, err := r.count(ctx, s.agent, "running")
	back = time.Since(start)
	if err != nil {
		return resumed, consume, back, err
	}
	if n != runs {
		return resumed, consume, back, fmt.Errorf("agent runs running after the reconnect: got %d, want %d", n, runs)
	}
	return resumed, consume, back, nil
}

// drive lets the engine take the resumed runs on, and waits until each has
// made its tool call and waits for its next decision.
func (r *resumeBench) drive(ctx context.Context, s heldSet, f benchResumeFlags) (int, time.Duration, error) {
	before := r.sb.Stats().MessagesPosted
	start := time.Now()
	wctx, stop := context.WithCancel(ctx)
	worked := make(chan error, 1)
	go func() { worked <- r.eng.Run(wctx) }()
	defer func() { stop(); <-worked }()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-tick.C:
		}
		var waiting, other int
		if err := r.d.Read().QueryRowContext(ctx, `SELECT count(*) FILTER (WHERE status = 'waiting'), count(*) FILTER (WHERE status NOT IN ('waiting', 'running'))
			FROM runs WHERE workflow_id = $1`, s.agent).Scan(&waiting, &other); err != nil {
			return 0, 0, err
		}
		if other > 0 {
			return 0, 0, fmt.Errorf("%d resumed runs neither ran nor waited for their next decision", other)
		}
		if waiting == f.runs {
			return r.sb.Stats().MessagesPosted - before, time.Since(start), nil
		}
	}
}
