package engine_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
	"taskjuice/internal/engine"
	"taskjuice/internal/workflow"
)

// TestLongStepKeepsItsLease: a step that outlasts the lease is still being
// worked on, so no other worker may take the run over and execute the step
// a second time. Two engines (as two processes would) share one database.
func TestLongStepKeepsItsLease(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		const lease, hold = 300 * time.Millisecond, 1500 * time.Millisecond
		var mu sync.Mutex
		calls := 0
		entered := make(chan struct{}, 1)
		slow := func(ctx context.Context, c engine.Call) (engine.Outcome, error) {
			mu.Lock()
			calls++
			mu.Unlock()
			select {
			case entered <- struct{}{}:
			default:
			}
			select {
			case <-time.After(hold):
			case <-ctx.Done():
				return engine.Outcome{}, ctx.Err()
			}
			return engine.Outcome{Output: map[string]any{"ok": true}}, nil
		}
		exec := map[workflow.Kind]engine.Executor{workflow.NodeTransform: slow}
		a := engine.New(d, f.wfs, exec, nil, engine.Options{Owner: "a", Lease: lease, Poll: 10 * time.Millisecond})
		b := engine.New(d, f.wfs, exec, nil, engine.Options{Owner: "b", Lease: lease, Poll: 10 * time.Millisecond})
		wf := f.publish([]workflow.Node{{ID: "slow", Kind: workflow.NodeTransform, Config: json.RawMessage(`{"output": 1}`)}})
		id, err := f.eng.StartRun(f.ctx, wf, nil, "manual", "")
		must(t, err)

		ctx, cancel := context.WithTimeout(f.ctx, 30*time.Second)
		defer cancel()
		aDone := make(chan error, 1)
		go func() {
			_, err := a.Work(ctx)
			aDone <- err
		}()
		select {
		case <-entered:
		case <-time.After(10 * time.Second):
			t.Fatal("the first worker never started the step")
		}
		// While the first worker is inside its step, well past one lease,
		// the second keeps looking for work.
	poll:
		for {
			if _, err := b.Work(ctx); err != nil {
				t.Fatalf("second worker: %v", err)
			}
			select {
			case err := <-aDone:
				must(t, err)
				break poll
			case <-time.After(20 * time.Millisecond):
			}
		}
		for {
			did, err := b.Work(ctx)
			must(t, err)
			if !did {
				break
			}
		}
		mu.Lock()
		got := calls
		mu.Unlock()
		if got != 1 {
			t.Errorf("step executions: got %d, want 1", got)
		}
		r := f.run(id)
		if r.Status != engine.StatusCompleted || r.StepsDone != 1 {
			t.Errorf("run: %s after %d steps, want completed after 1", r.Status, r.StepsDone)
		}
		steps, err := f.eng.Steps(f.ctx, f.ws.ID, id)
		must(t, err)
		if len(steps) != 1 {
			t.Errorf("step rows: got %d, want 1", len(steps))
		}
	})
}
