package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"taskjuice/internal/db"
)

// SeedRuns records n runs of a published workflow in bulk, for benchmarks
// that need a large backlog or history before the clock starts: due ones
// (pending, due at once, as StartRun leaves them) or, with finished,
// completed ones with a completed step per node. It writes rows in
// multi-row statements, many per transaction, which is far faster than n
// StartRun calls; it skips the throughput breaker and deduplication, so
// nothing but a benchmark should use it. payload gives run i's trigger
// payload.
func (e *Engine) SeedRuns(ctx context.Context, workflowID string, n int, finished bool, payload func(i int) string) error {
	live, ok, err := e.workflows.Live(ctx, workflowID)
	if err != nil {
		return err
	}
	if !ok || live.Graph.Trigger == nil {
		return ErrNotDispatching
	}
	g := live.Graph
	frontier, _ := json.Marshal(g.Successors(g.Trigger.ID, ""))
	status, due, steps := "pending", true, 0
	if finished {
		status, due, frontier, steps = "completed", false, []byte("[]"), len(g.Nodes)
	}
	// Spread over the last n milliseconds, oldest first, as if started one
	// after another.
	base := e.now().Add(-time.Duration(n) * time.Millisecond)
	// One statement's parameters stay well under SQLite's limit (32,766).
	batch, perTx := max(1, min(400, 4000/max(1, len(g.Nodes)))), 10
	for done := 0; done < n; {
		err := e.db.InTx(ctx, func(tx db.Querier) error {
			for range perTx {
				k := min(batch, n-done)
				if k == 0 {
					return nil
				}
				var runs, stepRows strings.Builder
				runs.WriteString(`INSERT INTO runs (id, workspace_id, workflow_id, version_id, kind, status, source, trigger_payload,
					frontier, steps_done, due_at, created_at, started_at, finished_at, updated_at) VALUES `)
				stepRows.WriteString(`INSERT INTO run_steps (id, run_id, node_id, attempt, status, input_from, output, started_at, finished_at) VALUES `)
				var args, stepArgs []any
				for i := range k {
					idx := done + i
					at := base.Add(time.Duration(idx) * time.Millisecond)
					id := uuid.NewString()
					var dueAt, started, end any
					if due {
						dueAt = at
					} else {
						started, end = at, at.Add(time.Millisecond)
					}
					if i > 0 {
						runs.WriteString(",")
					}
					p := len(args)
					fmt.Fprintf(&runs, "($%d, $%d, $%d, $%d, 'workflow', $%d, 'bench', $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d)",
						p+1, p+2, p+3, p+4, p+5, p+6, p+7, p+8, p+9, p+10, p+11, p+12, p+10)
					args = append(args, id, live.WorkspaceID, live.WorkflowID, live.VersionID, status, payload(idx), string(frontier), steps, dueAt, at, started, end)
					if !finished {
						continue
					}
					from := "" // the first step's input is the trigger payload
					for _, node := range g.Nodes {
						if len(stepArgs) > 0 {
							stepRows.WriteString(",")
						}
						q := len(stepArgs)
						fmt.Fprintf(&stepRows, "($%d, $%d, $%d, 1, 'completed', $%d, '{}', $%d, $%d)", q+1, q+2, q+3, q+4, q+5, q+6)
						stepArgs = append(stepArgs, db.NewID(), id, node.ID, from, at, end)
						from = node.ID
					}
				}
				if _, err := tx.ExecContext(ctx, runs.String(), args...); err != nil {
					return fmt.Errorf("seed runs: %w", err)
				}
				if len(stepArgs) > 0 {
					if _, err := tx.ExecContext(ctx, stepRows.String(), stepArgs...); err != nil {
						return fmt.Errorf("seed steps: %w", err)
					}
				}
				done += k
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}
