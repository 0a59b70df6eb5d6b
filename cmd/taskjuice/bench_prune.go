package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"taskjuice/internal/engine"
	"taskjuice/internal/workflow"
)

// benchPrune times the pruning of finished runs past retention: --runs
// finished one-step runs are recorded (with their steps), then a pass of
// an engine whose clock is 31 days on deletes them (the default keeps 30
// days), while --kept newer runs must stay.
func benchPrune(ctx context.Context, args []string, e env) error {
	var f benchDB
	var runs, kept int
	fs := flag.NewFlagSet("taskjuice bench prune", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	f.flags(fs, time.Hour)
	fs.IntVar(&runs, "runs", 1000000, "finished runs past retention to prune")
	fs.IntVar(&kept, "kept", 1000, "finished runs within retention, to keep")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if runs < 1 || kept < 0 {
		return errors.New("--runs must be at least 1 and --kept not negative")
	}
	ctx, d, done, err := f.open(ctx, fs, e, "prune")
	if err != nil {
		return err
	}
	defer done()
	out := e.stdout
	ws, err := benchWorkspace(ctx, d)
	if err != nil {
		return err
	}
	wfs := workflow.NewService(d)
	wf, err := publishChain(ctx, wfs, ws, 1)
	if err != nil {
		return err
	}
	payload := func(i int) string {
		return fmt.Sprintf(`{"n": 0, "run": %d, "customer": {"email": "lead%d@client%d.example"}}`, i, i, i%50)
	}
	// Recorded now; the pruning engine's clock is 31 days on, so these are
	// past the default 30 days.
	old := engine.New(d, wfs, nil, nil, engine.Options{Log: benchLog(e)})
	start := time.Now()
	if err := old.SeedRuns(ctx, wf, runs, true, payload); err != nil {
		return err
	}
	fmt.Fprintf(out, "recorded %d finished runs with their steps: %s\n", runs, round(time.Since(start)))
	later := func() time.Time { return time.Now().Add(31 * 24 * time.Hour) }
	pruner := engine.New(d, wfs, nil, nil, engine.Options{Log: benchLog(e), Now: later})
	if kept > 0 {
		// Within retention from the pruner's point of view: recorded "now"
		// on its clock.
		if err := pruner.SeedRuns(ctx, wf, kept, true, payload); err != nil {
			return err
		}
	}
	// Searchable, as the server's indexer leaves them: pruning a run
	// removes its search values too.
	start = time.Now()
	ix, err := pruner.IndexRuns(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "indexed them for search (%d values): %s\n", ix.Values, round(time.Since(start)))
	rep, err := pruner.Prune(ctx)
	if err != nil {
		return err
	}
	var values, orphans int
	if err := d.Read().QueryRowContext(ctx, `SELECT COUNT(*), COUNT(*) - COUNT(r.id) FROM run_values v LEFT JOIN runs r ON r.id = v.run_id`).Scan(&values, &orphans); err != nil {
		return err
	}
	var left int
	if err := d.Read().QueryRowContext(ctx, `SELECT COUNT(*) FROM runs WHERE workflow_id = $1`, wf).Scan(&left); err != nil {
		return err
	}
	var steps int
	if err := d.Read().QueryRowContext(ctx, `SELECT COUNT(*) FROM run_steps s JOIN runs r ON r.id = s.run_id WHERE r.workflow_id = $1`, wf).Scan(&steps); err != nil {
		return err
	}
	ok := rep.Runs == runs && left == kept && steps == kept && orphans == 0 && (kept == 0) == (values == 0)
	fmt.Fprintf(out, "pruned %d runs (with their steps and search values) in %d transactions: %s, %.0f runs/s; longest transaction %s; %d runs kept, %d steps, %d search values (%d left of pruned runs): %s\n",
		rep.Runs, rep.Batches, round(rep.Took), float64(rep.Runs)/rep.Took.Seconds(), round(rep.LongestBatch), left, steps, values, orphans, verdict(ok))
	writeJSONLine(out, map[string]any{"bench": "prune", "database": string(d.Dialect()), "pruned": rep.Runs, "batches": rep.Batches,
		"seconds": roundTo(rep.Took.Seconds(), 3), "runs_per_second": roundTo(float64(rep.Runs)/rep.Took.Seconds(), 0),
		"longest_batch_ms": roundTo(msf(rep.LongestBatch), 2), "kept": left, "pass": ok})
	if !ok {
		return fmt.Errorf("bench prune: pruned %d of %d, kept %d of %d: %w", rep.Runs, runs, left, kept, errTargetMissed)
	}
	return nil
}
