package engine

import (
	"context"
	"time"

	"taskjuice/internal/db"
	"taskjuice/internal/workflow"
)

// Observer hears what the engine does, for metrics. Its methods are called
// on the engine's paths and must return at once.
type Observer interface {
	// RunStarted is a new run recorded (not one a dedup key found).
	RunStarted(workspaceID string)
	// RunFinished is a run that ended: completed, failed or cancelled.
	RunFinished(workspaceID string, status Status)
	// StepExecuted is one execution of a node and how long it took.
	StepExecuted(kind workflow.Kind, took time.Duration, failed bool)
}

type noObserver struct{}

func (noObserver) RunStarted(string)                               {}
func (noObserver) RunFinished(string, Status)                      {}
func (noObserver) StepExecuted(workflow.Kind, time.Duration, bool) {}

// finished tells the observer of a run that ended inside tx. The run's
// workspace is read in the same transaction; a run ending twice cannot
// happen (the update that ends it matches only an unfinished run).
func (e *Engine) finished(ctx context.Context, tx db.Querier, runID string, status Status) {
	if _, none := e.o.Observer.(noObserver); none {
		return
	}
	var ws string
	if err := tx.QueryRowContext(ctx, `SELECT workspace_id FROM runs WHERE id = $1`, runID).Scan(&ws); err == nil {
		e.o.Observer.RunFinished(ws, status)
	}
}
