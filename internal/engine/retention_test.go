package engine_test

import (
	"encoding/json"
	"testing"
	"time"

	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
	"taskjuice/internal/engine"
	"taskjuice/internal/workflow"
)

// Pruning deletes finished runs (with their steps) older than the
// workspace keeps them and beyond its runs per workflow, in batches; runs
// still waiting are kept whatever their age; the pass records what it
// removed.
func TestPruneRuns(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		done := f.publish([]workflow.Node{{ID: "ok", Kind: workflow.NodeTransform, Config: json.RawMessage(`{"output": {"ok": true}}`)}})
		wait := f.publish([]workflow.Node{{ID: "wait", Kind: workflow.NodeApproval, Config: json.RawMessage(`{"message": "Go?"}`)}})
		start := func(wf string, n int) {
			for range n {
				_, err := f.eng.StartRun(f.ctx, wf, nil, "manual", "")
				must(t, err)
			}
			drainAll(t, f)
		}
		start(done, 620) // more than one batch
		start(wait, 3)
		if r, err := f.eng.Retention(f.ctx, f.ws.ID); err != nil || r != engine.DefaultRetention {
			t.Fatalf("default retention: %+v, %v", r, err)
		}
		if err := f.eng.SetRetention(f.ctx, f.ws.ID, 0, 100); !apperr.Is(err, apperr.KindInvalid) {
			t.Fatalf("0 days: %v, want invalid", err)
		}
		// Nothing is old yet.
		rep, err := f.eng.Prune(f.ctx)
		must(t, err)
		if rep.Runs != 0 {
			t.Fatalf("pruned %d fresh runs", rep.Runs)
		}
		f.clk.Advance(31 * 24 * time.Hour)
		start(done, 150) // new runs, kept by age
		rep, err = f.eng.Prune(f.ctx)
		must(t, err)
		if rep.Runs != 620 || rep.Batches < 2 {
			t.Fatalf("pruned %d runs in %d batches, want the 620 old finished ones in at least 2", rep.Runs, rep.Batches)
		}
		count := func(q string, args ...any) int {
			var n int
			must(t, d.Read().QueryRowContext(f.ctx, q, args...).Scan(&n))
			return n
		}
		if n := count(`SELECT COUNT(*) FROM runs WHERE workflow_id = $1 AND status = 'waiting'`, wait); n != 3 {
			t.Fatalf("waiting runs after pruning: %d, want all 3 kept", n)
		}
		if n := count(`SELECT COUNT(*) FROM run_steps s WHERE NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = s.run_id)`); n != 0 {
			t.Fatalf("steps left of pruned runs: %d", n)
		}
		// At most 100 runs per workflow: the 50 oldest of the 150 go.
		must(t, f.eng.SetRetention(f.ctx, f.ws.ID, 365, 100))
		rep, err = f.eng.Prune(f.ctx)
		must(t, err)
		if rep.Runs != 50 || count(`SELECT COUNT(*) FROM runs WHERE workflow_id = $1`, done) != 100 {
			t.Fatalf("pruned %d beyond the cap; %d left, want 50 and 100", rep.Runs, count(`SELECT COUNT(*) FROM runs WHERE workflow_id = $1`, done))
		}
		r, err := f.eng.Retention(f.ctx, f.ws.ID)
		must(t, err)
		if r.LastPruned != 50 || r.LastPrunedAt == nil || r.Days != 365 {
			t.Fatalf("retention after the pass: %+v", r)
		}
	})
}
