package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
)

// RetryVersion says which version a retry from the failed step runs on.
type RetryVersion string

const (
	// RetryOriginal runs the retry on the version the failed run ran.
	RetryOriginal RetryVersion = "original"
	// RetryLive runs it on the workflow's live version.
	RetryLive RetryVersion = "live"
)

// Messages of a refused retry.
const (
	MsgRetryNotFailed   = "Only a failed run can be retried from its failed step"
	MsgRetryBadVersion  = `Choose the version to retry on: "original" (the version the run ran) or "live"`
	msgRetryMissingStep = "The live version has no step %q, where this run failed; retry it on the version it ran"
)

// RetryFailed takes a failed run up again at the step that failed, as a
// new run that links back to it (retry_of): the new run starts with copies
// of the steps the failed run completed, outputs and all, and its frontier
// is where the failed run stopped, so only the failed step and those after
// it execute. The failed run stays as it was. On the live version, every
// step still to run must exist in it.
func (e *Engine) RetryFailed(ctx context.Context, workspaceID, runID, actor string, on RetryVersion) (string, error) {
	if on != RetryOriginal && on != RetryLive {
		return "", apperr.BadRequest("invalid_version", MsgRetryBadVersion)
	}
	st, err := e.load(ctx, e.db.Read(), runID)
	if err != nil {
		return "", err
	}
	if st.WorkspaceID != workspaceID {
		return "", apperr.ErrNotFound
	}
	if st.Status != StatusFailed {
		return "", apperr.Conflict("not_failed", "", MsgRetryNotFailed)
	}
	versionID, err := e.retryVersion(ctx, st, on)
	if err != nil {
		return "", err
	}
	frontier, _ := json.Marshal(st.frontier)
	id := newRunID()
	now := e.now()
	err = e.db.InTx(ctx, func(tx db.Querier) error {
		// Copied in the same transaction as the run is recorded due: no
		// worker can take the run up before its completed steps are there.
		if _, err := tx.ExecContext(ctx, `INSERT INTO runs (id, workspace_id, workflow_id, version_id, kind, status, source, trigger_payload,
				retry_of, frontier, steps_done, due_at, created_at, updated_at)
			SELECT $1, workspace_id, workflow_id, $2, kind, 'pending', 'retry', trigger_payload, id, $3, 0, $4, $4, $4 FROM runs WHERE id = $5`,
			id, versionID, string(frontier), now, runID); err != nil {
			return fmt.Errorf("record retry: %w", err)
		}
		// Each entry's completed attempt, as it was: its output, its
		// input's origin and the key its effect carried.
		res, err := tx.ExecContext(ctx, `INSERT INTO run_steps (run_id, node_id, attempt, id, status, input, input_from, output, console, error,
				idempotency_key, started_at, finished_at)
			SELECT $1, node_id, attempt, $2 || ':' || node_id, status, input, input_from, output, console, error,
				`+stepKey+`, started_at, finished_at FROM run_steps WHERE run_id = $3 AND status = 'completed'`, id, id, runID)
		if err != nil {
			return fmt.Errorf("copy completed steps: %w", err)
		}
		copied, _ := res.RowsAffected()
		if _, err := tx.ExecContext(ctx, `UPDATE runs SET steps_done = $1 WHERE id = $2`, copied, id); err != nil {
			return fmt.Errorf("record retry: %w", err)
		}
		detail := fmt.Sprintf("as %s from %s on the %s version", id, strings.Join(st.frontier, ", "), on)
		if err := e.event(ctx, tx, runID, "retried", actor, detail); err != nil {
			return err
		}
		return e.event(ctx, tx, id, "retry", actor, "of "+runID)
	})
	if err != nil {
		return "", err
	}
	e.o.Observer.RunStarted(workspaceID)
	e.notify(ctx)
	return id, nil
}

// retryVersion is the version a retry runs on: the failed run's own, or
// the live one, which must be dispatching and hold every step still to run.
func (e *Engine) retryVersion(ctx context.Context, st state, on RetryVersion) (string, error) {
	if on == RetryOriginal {
		return st.VersionID, nil
	}
	live, ok, err := e.workflows.Live(ctx, st.WorkflowID)
	if err != nil {
		return "", err
	}
	if !ok || !live.Status.Dispatching() {
		return "", ErrNotDispatching
	}
	for _, entry := range st.frontier {
		if _, ok := live.Graph.Node(EntryNode(entry)); !ok {
			return "", apperr.Conflict("step_missing", "", fmt.Sprintf(msgRetryMissingStep, EntryNode(entry)))
		}
	}
	return live.VersionID, nil
}

// Retries lists the runs that retried a run, oldest first.
func (e *Engine) Retries(ctx context.Context, workspaceID, runID string) ([]Run, error) {
	rows, err := e.db.Read().QueryContext(ctx, `SELECT `+runColumns+` FROM runs WHERE retry_of = $1 AND workspace_id = $2 ORDER BY created_at, id`, runID, workspaceID)
	if err != nil {
		return nil, fmt.Errorf("list retries: %w", err)
	}
	defer rows.Close()
	var out []Run
	for rows.Next() {
		st, err := scanState(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, st.Run)
	}
	return out, rows.Err()
}
