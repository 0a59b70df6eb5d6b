package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"taskjuice/internal/db"
	"taskjuice/internal/workflow"
)

// SourceError is the source of a run an error workflow's Error trigger
// started; such a run failing starts no other.
const SourceError = "error"

// startErrorWorkflow starts, in the failing run's transaction, the error
// workflow its workflow names, with the failure as the trigger payload:
// once per failed run (its dedup key is the failed run's id). An error
// workflow that is not live, or no longer starts with the Error trigger,
// is passed over with a warning: the failure is recorded all the same.
func (e *Engine) startErrorWorkflow(ctx context.Context, tx db.Querier, runID string, se *StepError) error {
	var f struct{ workflowID, name, errorWorkflowID, source, payload, frontier, versionID, workspaceID, slug string }
	var started, finished *time.Time
	err := tx.QueryRowContext(ctx, `SELECT r.workflow_id, w.name, COALESCE(w.error_workflow_id, ''), r.source, r.trigger_payload, r.frontier,
			r.version_id, r.workspace_id, s.slug, r.started_at, r.finished_at
		FROM runs r JOIN workflows w ON w.id = r.workflow_id JOIN workspaces s ON s.id = r.workspace_id WHERE r.id = $1`, runID).
		Scan(&f.workflowID, &f.name, &f.errorWorkflowID, &f.source, &f.payload, &f.frontier, &f.versionID, &f.workspaceID, &f.slug, &started, &finished)
	if err != nil {
		return fmt.Errorf("read failed run: %w", err)
	}
	if f.errorWorkflowID == "" || f.source == SourceError {
		return nil
	}
	live, ok, err := e.workflows.Live(ctx, f.errorWorkflowID)
	if err != nil || !ok || !live.Status.Dispatching() || live.Graph.Trigger == nil || live.Graph.Trigger.Kind != workflow.TriggerError {
		e.o.Log.Warn("error workflow not started: it is not published with the Error trigger", "workflow", f.workflowID, "error_workflow", f.errorWorkflowID, "err", err)
		return nil
	}
	failure := map[string]any{
		"workflow": map[string]any{"id": f.workflowID, "name": f.name},
		"run":      map[string]any{"id": runID, "source": f.source, "startedAt": started, "failedAt": finished, "link": e.runLink(f.slug, f.workflowID, runID)},
		"error":    se,
		"trigger":  json.RawMessage(nonEmpty(json.RawMessage(f.payload))),
	}
	if step := e.failedStep(ctx, f.versionID, f.frontier); step != nil {
		failure["failedStep"] = step
	}
	payload, err := json.Marshal(failure)
	if err != nil {
		return fmt.Errorf("encode failure: %w", err)
	}
	r, err := e.newStart(live, payload, SourceError, "error:"+runID, origin{})
	if err != nil {
		return err
	}
	res, err := tx.ExecContext(ctx, insertRunOrKeep, r.args()...)
	if err != nil {
		return fmt.Errorf("start error workflow: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		e.o.Observer.RunStarted(r.workspaceID)
	}
	return nil
}

// failedStep names the step a failed run stopped at: the first entry of
// its frontier.
func (e *Engine) failedStep(ctx context.Context, versionID, frontier string) map[string]any {
	var entries []string
	if json.Unmarshal([]byte(frontier), &entries) != nil || len(entries) == 0 {
		return nil
	}
	step := map[string]any{"id": EntryNode(entries[0])}
	if g, err := e.graph(ctx, versionID); err == nil {
		if n, ok := g.Node(EntryNode(entries[0])); ok {
			step["kind"], step["name"] = n.Kind, n.Name
		}
	}
	return step
}

// runLink is the address of a run's page, when the engine knows the
// server's base URL.
func (e *Engine) runLink(slug, workflowID, runID string) string {
	if e.o.BaseURL == "" {
		return ""
	}
	return e.o.BaseURL + "/" + slug + "/monitoring/workflow-runs/" + workflowID + "/" + runID
}

// noteFailure records a failed run's error code and the step it failed at
// (the first entry of its frontier) in their own columns, for grouping.
func (e *Engine) noteFailure(ctx context.Context, tx db.Querier, runID string, se *StepError) error {
	code := "FAILED"
	if se != nil && se.Code != "" {
		code = se.Code
	}
	var frontier string
	if err := tx.QueryRowContext(ctx, `SELECT frontier FROM runs WHERE id = $1`, runID).Scan(&frontier); err != nil {
		return fmt.Errorf("read failed run: %w", err)
	}
	var entries []string
	node := ""
	if json.Unmarshal([]byte(frontier), &entries) == nil && len(entries) > 0 {
		node = EntryNode(entries[0])
	}
	_, err := tx.ExecContext(ctx, `UPDATE runs SET error_code = $1, failed_node = $2 WHERE id = $3`, code, node, runID)
	if err != nil {
		return fmt.Errorf("note failure: %w", err)
	}
	return nil
}
