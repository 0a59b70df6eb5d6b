package engine_test

import (
	"encoding/json"
	"testing"

	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
	"taskjuice/internal/engine"
	"taskjuice/internal/workflow"
)

// TestClaimStats: every claim is counted, with the runs it took, and a
// claim that found no due run counts as empty.
func TestClaimStats(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		if did, err := f.eng.Work(f.ctx); err != nil || did {
			t.Fatalf("work with nothing due: %v, %v", did, err)
		}
		wf := f.publish([]workflow.Node{{ID: "done", Kind: workflow.NodeTransform, Config: json.RawMessage(`{"output": {"ok": true}}`)}})
		for range 2 {
			_, err := f.eng.StartRun(f.ctx, wf, nil, "manual", "")
			must(t, err)
		}
		f.drain()
		// Two claims took a run each; the one before them and the one that
		// ended the drain found nothing.
		want := engine.ClaimStats{Claims: 4, Empty: 2, Runs: 2}
		if got := f.eng.ClaimStats(); got != want {
			t.Fatalf("claim stats: %+v, want %+v", got, want)
		}
	})
}
