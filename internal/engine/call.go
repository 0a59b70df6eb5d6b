package engine

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
	"taskjuice/internal/workflow"
)

// MaxCallDepth bounds workflows calling workflows.
const MaxCallDepth = 5

// callWorkflow starts the called workflow's run (once per attempt: the
// attempt's idempotency key dedups it) and parks this step until that run
// finishes.
func (e *Engine) callWorkflow(ctx context.Context, c Call) (Outcome, error) {
	var cfg struct {
		WorkflowID string          `json:"workflowId"`
		Input      json.RawMessage `json:"input"`
	}
	if err := json.Unmarshal(nonEmpty(c.Config), &cfg); err != nil {
		return Outcome{}, &StepError{Code: "CONFIG_INVALID", Message: err.Error()}
	}
	depth, err := e.callDepth(ctx, c.Run.ID)
	if err != nil {
		return Outcome{}, err
	}
	if depth >= MaxCallDepth {
		return Outcome{}, &StepError{Code: "CALL_DEPTH", Message: fmt.Sprintf("Workflows may call each other at most %d deep", MaxCallDepth)}
	}
	live, ok, err := e.workflows.Live(ctx, cfg.WorkflowID)
	if err != nil && !apperr.IsNotFound(err) {
		return Outcome{}, err
	}
	if err != nil || !ok || !live.Status.Dispatching() || live.WorkspaceID != c.Run.WorkspaceID {
		return Outcome{}, &StepError{Code: "CALLED_WORKFLOW_UNAVAILABLE", Message: "The called workflow is not a published workflow of this workspace"}
	}
	input := cfg.Input
	if len(input) == 0 || string(input) == "null" {
		input = c.Input
	}
	child, err := e.start(ctx, live, input, "call", "call:"+c.IdempotencyKey,
		origin{parentRun: c.Run.ID, parentNode: c.Node.ID})
	if err != nil {
		return Outcome{}, err
	}
	fmt.Fprintf(c.Console, "started run %s of workflow %s\n", child, live.WorkflowID)
	return Outcome{Output: map[string]any{"runId": child}, WaitFor: "workflow"}, nil
}

// callDepth counts the callers above a run.
func (e *Engine) callDepth(ctx context.Context, runID string) (int, error) {
	depth := 0
	for id := runID; depth <= MaxCallDepth; depth++ {
		var parent sql.NullString
		if err := e.db.Read().QueryRowContext(ctx, `SELECT parent_run_id FROM runs WHERE id = $1`, id).Scan(&parent); err != nil {
			return 0, fmt.Errorf("read caller: %w", err)
		}
		if !parent.Valid {
			return depth, nil
		}
		id = parent.String
	}
	return depth, nil
}

// wakeCaller hands a finished called run's result to the step that called
// it and makes the caller due, in the transaction that finished the run.
func (e *Engine) wakeCaller(ctx context.Context, tx db.Querier, runID string, status Status, now time.Time) error {
	var parent, node sql.NullString
	if err := tx.QueryRowContext(ctx, `SELECT parent_run_id, parent_node_id FROM runs WHERE id = $1`, runID).Scan(&parent, &node); err != nil {
		return fmt.Errorf("read caller: %w", err)
	}
	if !parent.Valid {
		return nil
	}
	var output sql.NullString
	err := tx.QueryRowContext(ctx, `SELECT output FROM run_steps WHERE run_id = $1 AND status = 'completed' ORDER BY finished_at DESC, id DESC LIMIT 1`, runID).Scan(&output)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("read called run's output: %w", err)
	}
	result := map[string]any{"runId": runID, "status": status}
	if output.Valid {
		result["output"] = json.RawMessage(output.String)
	}
	b, _ := json.Marshal(result)
	// The caller's row first, as a worker parking the caller takes it
	// (waitAll, parallel.go): it sees the result or is woken by it. The
	// caller may be going on with its other arms meanwhile.
	if _, err := tx.ExecContext(ctx, `UPDATE runs SET due_at = $1, updated_at = $1 WHERE id = $2 AND status IN ('pending', 'running', 'waiting')`, now, parent.String); err != nil {
		return fmt.Errorf("wake caller: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE run_steps SET output = $1 WHERE run_id = $2 AND node_id = $3 AND status = 'waiting'`,
		string(b), parent.String, node.String); err != nil {
		return fmt.Errorf("hand result to caller: %w", err)
	}
	return nil
}

// calledFailure turns a called run that did not complete into the calling
// step's error.
func calledFailure(node workflow.Node, output json.RawMessage) error {
	if node.Kind != workflow.NodeCallWorkflow {
		return nil
	}
	var r struct {
		Status Status `json:"status"`
		RunID  string `json:"runId"`
	}
	if json.Unmarshal(output, &r) != nil || r.Status == StatusCompleted {
		return nil
	}
	return &StepError{Code: "CALLED_WORKFLOW_FAILED", Message: fmt.Sprintf("The called workflow's run %s ended %s", r.RunID, r.Status)}
}
