package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"sync"
	"time"

	"taskjuice/internal/catalog"
	"taskjuice/internal/connection"
	"taskjuice/internal/db"
	"taskjuice/internal/engine"
	"taskjuice/internal/expr"
	"taskjuice/internal/vault"
	"taskjuice/internal/workflow"
)

// "taskjuice bench engine-worker" is one worker process of "bench engine
// --processes N", started by it and not meant to be run by hand: the
// engine as "taskjuice serve" builds it, with its normal claim loop, on the
// database the parent prepared. It speaks to the parent through its
// standard streams:
//
//   - it prints "ready" once its engine is built;
//   - it starts working when a line "go" arrives on its standard input,
//     and stops (gracefully, as serve does on SIGTERM) when its standard
//     input ends;
//   - it then prints one JSON line, a workerReport.

// workerDatabaseEnv names the database the parent prepared for its
// workers: a postgres:// URL with the bench's search_path, or the SQLite
// file.
const workerDatabaseEnv = "TASKJUICE_BENCH_WORKER_DATABASE"

// workerReport is what one worker process did between "go" and its stop.
type workerReport struct {
	Owner string `json:"owner"`
	// Executions lists every Transform step it executed, as "RUN NODE
	// ATTEMPT", so the parent can tell a step executed twice (here or in
	// two processes) from one executed once.
	Executions []string          `json:"executions"`
	Claims     engine.ClaimStats `json:"claims"`
	CPUSeconds float64           `json:"cpu_seconds"`
}

// executionLog records the Transform executions of one process.
type executionLog struct {
	mu   sync.Mutex
	list []string
}

// wrap returns exec, recording each call before it runs.
func (l *executionLog) wrap(exec engine.Executor) engine.Executor {
	return func(ctx context.Context, c engine.Call) (engine.Outcome, error) {
		l.mu.Lock()
		l.list = append(l.list, fmt.Sprintf("%s %s %d", c.Run.ID, c.Entry, c.Attempt))
		l.mu.Unlock()
		return exec(ctx, c)
	}
}

func (l *executionLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.list...)
}

func benchEngineWorker(ctx context.Context, args []string, e env) error {
	fs := flag.NewFlagSet("taskjuice bench engine-worker", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	owner := fs.String("owner", "", "this process's name in leases and heartbeats")
	concurrency := fs.Int("concurrency", 32, "runs this process works on at once (engine.Options.Workers)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case e.getenv(workerDatabaseEnv) == "" || *owner == "":
		return errors.New("engine-worker is started by \"taskjuice bench engine --processes N\"; it needs " + workerDatabaseEnv + " and --owner")
	case *concurrency < 1:
		return errors.New("--concurrency must be at least 1")
	}
	d, err := db.Open(ctx, e.getenv(workerDatabaseEnv))
	if err != nil {
		return err
	}
	defer d.Close()
	var execs executionLog
	eng, err := workerEngine(d, e, *owner, *concurrency, &execs)
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, "ready")
	in := bufio.NewReader(e.stdin)
	if line, err := in.ReadString('\n'); err != nil || strings.TrimSpace(line) != "go" {
		return errors.New("engine-worker: the parent did not say go")
	}
	rep, err := workUntilEOF(ctx, eng, in)
	if err != nil {
		return err
	}
	rep.Owner, rep.Executions = *owner, execs.all()
	b, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(e.stdout, string(b))
	return err
}

// workerEngine builds the engine as serve does, its Transform steps
// recorded in execs.
func workerEngine(d *db.DB, e env, owner string, concurrency int, execs *executionLog) (*engine.Engine, error) {
	cat, err := catalog.Load(catalog.Options{Getenv: func(string) string { return "" }})
	if err != nil {
		return nil, fmt.Errorf("app catalog: %w", err)
	}
	log := benchLog(e).With("component", "engine", "process", owner)
	conns := connection.NewService(d, vault.NewKeyring(benchKey()))
	refresher := connection.NewRefresher(conns, connection.CatalogOAuth(cat, benchRedirectURL), connection.RefresherOptions{Log: log})
	executors := engine.Builtins(cat, connection.NewAppClient(conns, refresher, cat, nil), nil)
	executors[workflow.NodeTransform] = execs.wrap(executors[workflow.NodeTransform])
	return engine.New(d, workflow.NewService(d), executors, engine.Expressions(expr.Limits{}),
		engine.Options{Owner: owner, Workers: concurrency, Poll: 100 * time.Millisecond, Log: log}), nil
}

// workUntilEOF runs the engine's claim loop until in ends (or ctx does),
// then lets it stop gracefully, and reports its claims and CPU time.
func workUntilEOF(ctx context.Context, eng *engine.Engine, in *bufio.Reader) (workerReport, error) {
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		defer stop()
		for {
			if _, err := in.ReadString('\n'); err != nil {
				return
			}
		}
	}()
	cpu0 := processCPU()
	if err := eng.Run(wctx); err != nil {
		return workerReport{}, err
	}
	return workerReport{Claims: eng.ClaimStats(), CPUSeconds: (processCPU() - cpu0).Seconds()}, nil
}
