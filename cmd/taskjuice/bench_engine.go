package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"taskjuice/internal/account"
	"taskjuice/internal/catalog"
	"taskjuice/internal/connection"
	"taskjuice/internal/db"
	"taskjuice/internal/engine"
	"taskjuice/internal/expr"
	"taskjuice/internal/vault"
	"taskjuice/internal/workflow"
)

// errTargetMissed ends a bench whose figures missed a target.
var errTargetMissed = errors.New("a target was missed")

// stepsTarget is what the engine is held to: durable steps per second, on
// either database, with 10-step runs and at least 32 in flight.
const stepsTarget = 10000.0

type benchEngineFlags struct {
	benchDB
	runs, steps, concurrency int
	cpuProfile               string
	duration                 time.Duration
	// backlog lists the backlog sizes to measure (--backlog), finished the
	// finished runs recorded first (--finished).
	backlog  []int
	finished int
	// processes is how many worker processes execute the runs
	// (--processes; 0: this process), workerBinary the binary they run.
	processes    int
	workerBinary string
}

func benchEngine(ctx context.Context, args []string, e env) error {
	var f benchEngineFlags
	fs := flag.NewFlagSet("taskjuice bench engine", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	f.flags(fs, 15*time.Minute)
	fs.IntVar(&f.runs, "runs", 5000, "runs started, all pending before the engine starts")
	fs.IntVar(&f.steps, "steps", 10, "Transform steps per run, chained, each evaluating an expression on the previous step's output")
	fs.IntVar(&f.concurrency, "concurrency", 32, "runs the engine works on at once (engine.Options.Workers)")
	fs.DurationVar(&f.duration, "duration", 0, "stop counting after this long, finished or not (0: wait for every run)")
	fs.StringVar(&f.cpuProfile, "cpuprofile", "", "write a CPU profile of the execution to this file (for go tool pprof)")
	backlog := fs.String("backlog", "", "comma-separated backlog sizes (e.g. 1000,10000,100000): for each, record that many runs as due before the clock starts and measure their drain")
	fs.IntVar(&f.finished, "finished", 0, "with --backlog: first record this many finished runs (with their steps), a large history")
	fs.IntVar(&f.processes, "processes", 0, "execute the runs in this many worker processes (this binary, re-run) sharing the database, and check none was lost or doubled; above 1 needs PostgreSQL (0: in this process)")
	fs.StringVar(&f.workerBinary, "worker-binary", "", "with --processes: the taskjuice binary the workers run (default: this one)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := f.validateProcesses(*backlog != ""); err != nil {
		return err
	}
	if *backlog != "" {
		for _, v := range strings.Split(*backlog, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || n < 1 {
				return fmt.Errorf("--backlog: %q is not a number of runs of at least 1", v)
			}
			f.backlog = append(f.backlog, n)
		}
	}
	if f.finished < 0 {
		return errors.New("--finished must not be negative")
	}
	switch {
	case f.runs < 1:
		return errors.New("--runs must be at least 1")
	case f.steps < 1 || f.steps > 200:
		return errors.New("--steps must be between 1 and 200")
	case f.concurrency < 1:
		return errors.New("--concurrency must be at least 1")
	case f.duration < 0:
		return errors.New("--duration must not be negative")
	}
	ctx, d, done, err := f.open(ctx, fs, e, "engine")
	if err != nil {
		return err
	}
	defer done()
	log, out := benchLog(e), e.stdout

	ws, err := benchWorkspace(ctx, d)
	if err != nil {
		return err
	}
	cat, err := catalog.Load(catalog.Options{Getenv: func(string) string { return "" }})
	if err != nil {
		return fmt.Errorf("app catalog: %w", err)
	}
	conns := connection.NewService(d, vault.NewKeyring(benchKey()))
	refresher := connection.NewRefresher(conns, connection.CatalogOAuth(cat, benchRedirectURL), connection.RefresherOptions{Log: log})
	wfs := workflow.NewService(d)
	// The engine as "taskjuice serve" builds it: the built-in executors and
	// the expression evaluator.
	eng := engine.New(d, wfs, engine.Builtins(cat, connection.NewAppClient(conns, refresher, cat, nil), nil), engine.Expressions(expr.Limits{}),
		engine.Options{Workers: f.concurrency, Poll: 100 * time.Millisecond, Log: log.With("component", "engine")})

	if f.processes > 0 {
		return benchProcesses(ctx, d, wfs, ws, eng, f, e)
	}
	if len(f.backlog) > 0 {
		return benchBacklog(ctx, d, wfs, ws, eng, f, out)
	}
	wf, err := publishChain(ctx, wfs, ws, f.steps)
	if err != nil {
		return err
	}
	start := time.Now()
	ids := make([]string, f.runs)
	for i := range ids {
		if ids[i], err = eng.StartRun(ctx, wf, json.RawMessage(fmt.Sprintf(`{"n": 0, "run": %d}`, i)), "bench", ""); err != nil {
			return fmt.Errorf("start run %d: %w", i+1, err)
		}
	}
	took := time.Since(start)
	fmt.Fprintf(out, "started %d runs of a chain of %d Transform steps: %s, %.0f/s\n", f.runs, f.steps, round(took), float64(f.runs)/took.Seconds())

	before, err := snapshotCost(ctx, d)
	if err != nil {
		return err
	}
	res, err := executeRuns(ctx, d, eng, wf, f, false)
	if err != nil {
		return err
	}
	cost, err := costSince(ctx, d, before)
	if err != nil {
		return err
	}
	// Cut short by --duration, the runs still going are no failure.
	ok := res.stepsPerSecond >= stepsTarget && (res.completed == f.runs || res.capped) && res.badRuns == 0
	fmt.Fprintf(out, "completed %d of %d runs, %d durable steps in %.2f s with %d in flight\n", res.completed, f.runs, res.steps, res.seconds, f.concurrency)
	fmt.Fprintf(out, "run latency (first step started to run finished): p50 %s, p95 %s, max %s\n", ms(res.p50), ms(res.p95), ms(res.max))
	fmt.Fprintf(out, "CPU time of this process meanwhile: %.2f s, %.0f µs per step\n", res.cpu.Seconds(), float64(res.cpu.Microseconds())/float64(max(res.steps, 1)))
	if res.badRuns > 0 {
		fmt.Fprintf(out, "%d completed runs did not end with the expected output or step count: FAIL\n", res.badRuns)
	}
	cost.print(out, d.Dialect())
	fmt.Fprintf(out, "steps per second: %.0f (target >= %.0f durable steps/s): %s\n", res.stepsPerSecond, stepsTarget, verdict(ok))
	line := map[string]any{
		"bench": "engine", "database": string(d.Dialect()), "runs": res.completed, "steps": res.steps, "steps_per_run": f.steps,
		"concurrency": f.concurrency, "seconds": roundTo(res.seconds, 3), "steps_per_second": roundTo(res.stepsPerSecond, 0),
		"p50_run_ms": roundTo(msf(res.p50), 2), "p95_run_ms": roundTo(msf(res.p95), 2), "cpu_us_per_step": roundTo(float64(res.cpu.Microseconds())/float64(max(res.steps, 1)), 1), "target_steps_per_second": stepsTarget, "pass": ok,
	}
	maps.Copy(line, cost.fields())
	writeJSONLine(out, line)
	if !ok {
		return fmt.Errorf("bench engine: %w", errTargetMissed)
	}
	return nil
}

// benchWorkspace creates the bench's account and workspace.
func benchWorkspace(ctx context.Context, d *db.DB) (account.Workspace, error) {
	accounts := account.NewService(d)
	acct, _, err := accounts.CreateAccount(ctx, "Bench Agency", account.NewUser{Email: "owner@bench.example", Password: account.GeneratePassword()})
	if err != nil {
		return account.Workspace{}, fmt.Errorf("create account: %w", err)
	}
	ws, err := accounts.CreateWorkspaceForAccount(ctx, acct.ID, "Bench", "bench")
	if err != nil {
		return account.Workspace{}, fmt.Errorf("create workspace: %w", err)
	}
	return ws, nil
}

func benchKey() vault.Key {
	key, _, err := vault.GenerateKey()
	if err != nil {
		panic(err) // the system's random source failed
	}
	return key
}

// publishChain publishes a workflow of a manual trigger and n Transform
// steps, each adding one to the previous step's n, so the last step's
// output is {"n": steps}.
func publishChain(ctx context.Context, wfs *workflow.Service, ws account.Workspace, n int) (string, error) {
	g := workflow.Graph{Schema: 1, Trigger: &workflow.Node{ID: "start", Kind: workflow.TriggerManual}}
	prev := "start"
	for i := range n {
		id := fmt.Sprintf("step%d", i+1)
		g.Nodes = append(g.Nodes, workflow.Node{ID: id, Kind: workflow.NodeTransform,
			Config: json.RawMessage(`{"output": {"n": "{{ $input.n + 1 }}", "run": "{{ $trigger.run }}"}}`)})
		g.Edges = append(g.Edges, workflow.Edge{From: prev, To: id})
		prev = id
	}
	w, err := wfs.Create(ctx, ws, "Bench chain", "", &g, "")
	if err != nil {
		return "", fmt.Errorf("create workflow: %w", err)
	}
	_, err = wfs.Publish(ctx, ws, w.ID, "", workflow.Checks{Expressions: expr.CompileJSON})
	var ce *workflow.CompileError
	if errors.As(err, &ce) {
		return "", fmt.Errorf("publish: %v", ce.Problems)
	}
	if err != nil {
		return "", fmt.Errorf("publish: %w", err)
	}
	return w.ID, nil
}

type engineResult struct {
	completed, steps, badRuns int
	seconds, stepsPerSecond   float64
	// capped says --duration ended the bench before every run finished.
	capped             bool
	p50, p95, p99, max time.Duration
	// cpu is the CPU time this process spent meanwhile (the engine, and
	// SQLite, which runs inside it; not PostgreSQL's).
	cpu time.Duration
}

// processCPU is the CPU time (user and system) the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// executeRuns runs the engine's workers until every run of wf completed
// (or --duration is up) and measures what they did.
//
// The run latency runs from its first step's start to its end, or with
// fromDue from when it fell due (its recording, or the clock's start for a
// run recorded before) to its end.
func executeRuns(ctx context.Context, d *db.DB, eng *engine.Engine, wf string, f benchEngineFlags, fromDue bool) (engineResult, error) {
	if f.cpuProfile != "" {
		pf, err := os.Create(f.cpuProfile)
		if err != nil {
			return engineResult{}, fmt.Errorf("cpu profile: %w", err)
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return engineResult{}, fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	wctx, stop := context.WithCancel(ctx)
	worked := make(chan error, 1)
	cpu0 := processCPU()
	start := time.Now()
	go func() { worked <- eng.Run(wctx) }()
	var deadline <-chan time.Time
	if f.duration > 0 {
		deadline = time.After(f.duration)
	}
	// The runs still to finish are the ones due: a finished run (or one
	// stopped) is due no more. Looking for one reads the start of a small
	// index, so polling often takes little from the engine.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var took time.Duration
	capped := false
wait:
	for {
		select {
		case <-ctx.Done():
			stop()
			<-worked
			return engineResult{}, fmt.Errorf("gave up waiting for the runs: %w", ctx.Err())
		case <-deadline:
			took, capped = time.Since(start), true
			break wait
		case <-tick.C:
		}
		var due int
		err := d.Read().QueryRowContext(ctx, `SELECT 1 FROM runs WHERE due_at IS NOT NULL LIMIT 1`).Scan(&due)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			stop()
			<-worked
			return engineResult{}, fmt.Errorf("look for runs to finish: %w", err)
		}
		if err != nil {
			took = time.Since(start)
			break
		}
	}
	stop()
	if err := <-worked; err != nil {
		return engineResult{}, err
	}
	cpu := processCPU() - cpu0
	pprof.StopCPUProfile()
	var stopped int
	if err := d.Read().QueryRowContext(ctx, `SELECT count(*) FROM runs WHERE workflow_id = $1 AND status IN ('failed', 'cancelled', 'paused')`, wf).Scan(&stopped); err != nil {
		return engineResult{}, fmt.Errorf("count failed runs: %w", err)
	}
	if stopped > 0 {
		return engineResult{}, fmt.Errorf("%d runs failed or stopped; see their steps (--keep)", stopped)
	}

	// Count what is durable now: completed steps, and the runs' own record.
	r := engineResult{seconds: took.Seconds(), cpu: cpu, capped: capped}
	if err := d.Read().QueryRowContext(ctx, `SELECT count(*) FROM run_steps s JOIN runs r ON r.id = s.run_id
		WHERE r.workflow_id = $1 AND s.status = 'completed'`, wf).Scan(&r.steps); err != nil {
		return r, fmt.Errorf("count steps: %w", err)
	}
	rows, err := d.Read().QueryContext(ctx, `SELECT r.created_at, r.started_at, r.finished_at, r.steps_done, COALESCE(s.output, '')
		FROM runs r LEFT JOIN run_steps s ON s.run_id = r.id AND s.node_id = $2 AND s.status = 'completed'
		WHERE r.workflow_id = $1 AND r.status = 'completed'`, wf, fmt.Sprintf("step%d", f.steps))
	if err != nil {
		return r, fmt.Errorf("read runs: %w", err)
	}
	defer rows.Close()
	var lat []time.Duration
	want := fmt.Sprintf(`"n":%d`, f.steps)
	for rows.Next() {
		var created, started, finished time.Time
		var done int
		var output string
		if err := rows.Scan(&created, &started, &finished, &done, &output); err != nil {
			return r, err
		}
		r.completed++
		from := started
		if fromDue {
			from = created
			if from.Before(start) {
				from = start
			}
		}
		lat = append(lat, finished.Sub(from))
		if done != f.steps || !strings.Contains(output, want) {
			r.badRuns++
		}
	}
	if err := rows.Err(); err != nil {
		return r, err
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		r.p50, r.p95, r.p99, r.max = quantile(lat, 0.5), quantile(lat, 0.95), quantile(lat, 0.99), lat[len(lat)-1]
	}
	r.stepsPerSecond = float64(r.steps) / r.seconds
	return r, nil
}

func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func roundTo(v float64, places int) float64 {
	p := 1.0
	for range places {
		p *= 10
	}
	return float64(int64(v*p+0.5)) / p
}

// writeJSONLine prints v as the bench's last line.
func writeJSONLine(out io.Writer, v any) {
	b, _ := json.Marshal(v)
	fmt.Fprintln(out, string(b))
}

// benchBacklog measures, for each --backlog size, how fast the engine
// drains that many runs all due before the clock starts (each size on a
// workflow of its own, after --finished finished runs were recorded): a run
// should cost the same whatever the backlog.
func benchBacklog(ctx context.Context, d *db.DB, wfs *workflow.Service, ws account.Workspace, eng *engine.Engine, f benchEngineFlags, out io.Writer) error {
	payload := func(i int) string { return fmt.Sprintf(`{"n": 0, "run": %d}`, i) }
	if f.finished > 0 {
		wf, err := publishChain(ctx, wfs, ws, f.steps)
		if err != nil {
			return err
		}
		start := time.Now()
		if err := eng.SeedRuns(ctx, wf, f.finished, true, payload); err != nil {
			return err
		}
		took := time.Since(start)
		fmt.Fprintf(out, "recorded %d finished runs of %d steps: %s, %.0f/s\n", f.finished, f.steps, round(took), float64(f.finished)/took.Seconds())
	}
	for _, n := range f.backlog {
		wf, err := publishChain(ctx, wfs, ws, f.steps)
		if err != nil {
			return err
		}
		start := time.Now()
		if err := eng.SeedRuns(ctx, wf, n, false, payload); err != nil {
			return err
		}
		seeded := time.Since(start)
		if err := analyze(ctx, d); err != nil {
			return err
		}
		g := f
		g.runs = n
		res, err := executeRuns(ctx, d, eng, wf, g, true)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "backlog %d (recorded in %s): completed %d runs, %d steps in %.2f s: %.0f steps/s; run latency from due to finished p50 %s, p99 %s; CPU %.0f µs per step\n",
			n, round(seeded), res.completed, res.steps, res.seconds, res.stepsPerSecond, ms(res.p50), ms(res.p99), float64(res.cpu.Microseconds())/float64(max(res.steps, 1)))
		if res.badRuns > 0 {
			return fmt.Errorf("bench engine: backlog %d: %d runs did not end with the expected output or step count", n, res.badRuns)
		}
		writeJSONLine(out, map[string]any{
			"bench": "engine", "database": string(d.Dialect()), "backlog": n, "finished_runs": f.finished, "runs": res.completed, "steps": res.steps,
			"steps_per_run": f.steps, "concurrency": f.concurrency, "seconds": roundTo(res.seconds, 3), "steps_per_second": roundTo(res.stepsPerSecond, 0),
			"p50_run_ms": roundTo(msf(res.p50), 2), "p99_run_ms": roundTo(msf(res.p99), 2), "capped": res.capped,
			"cpu_us_per_step": roundTo(float64(res.cpu.Microseconds())/float64(max(res.steps, 1)), 1),
		})
	}
	return nil
}

// analyze refreshes the planner's statistics after a bulk load, as a
// database that has been running has them.
func analyze(ctx context.Context, d *db.DB) error {
	if _, err := d.Write().ExecContext(ctx, `ANALYZE`); err != nil {
		return fmt.Errorf("analyze: %w", err)
	}
	return nil
}
