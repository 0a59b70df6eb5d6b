package engine

import (
	"context"
	"encoding/json"
	"fmt"

	"taskjuice/internal/db"
	"taskjuice/internal/workflow"
)

// WaitClientConnection is the wait reason of a run parked at an action
// node whose source is "Client provides the connection", while the client
// has not connected the app yet. It resumes by itself once they do
// (ResumeClientWaits).
const WaitClientConnection = "client-connection"

// withClientConnection resolves, for an action node whose client provides
// the connection, the connection the client bound to it (workflow-wide, so
// a run of any version finds it); while there is none the run waits.
func (e *Engine) withClientConnection(exec Executor) Executor {
	return func(ctx context.Context, c Call) (Outcome, error) {
		b := c.Node.Connection
		if b == nil || !b.ClientProvides || b.ID != "" {
			return exec(ctx, c)
		}
		id, ok, err := e.workflows.ClientConnection(ctx, c.Run.WorkflowID, c.Node.ID)
		if err != nil {
			return Outcome{}, err
		}
		if !ok {
			fmt.Fprintln(c.Console, "Waiting for the client to connect the app; the run goes on by itself once they do.")
			return Outcome{Output: map[string]any{"awaiting": WaitClientConnection}, WaitFor: WaitClientConnection}, nil
		}
		c.Node.Connection = &workflow.Binding{ID: id}
		return exec(ctx, c)
	}
}

// clientWaitError is what the waiting attempt shows once the client has
// connected: the attempt ends, and the next one runs with the connection.
var clientWaitError = &StepError{Code: "CLIENT_CONNECTION_WAITED", Message: "Waited for the client to connect the app. They did; the step ran again with their connection."}

// ResumeClientWaits sets going again the runs waiting for a client's
// connection (of one workflow, or of all when workflowID is empty) whose
// node the client has now connected: the waiting attempt ends, and the run
// is due, so the node runs again with the client's connection. It returns
// how many runs it set going. It is called when a client connects, and
// periodically, which also catches a run that parked while the client was
// connecting.
func (e *Engine) ResumeClientWaits(ctx context.Context, workflowID string) (int, error) {
	query := `SELECT id, workflow_id, version_id FROM runs WHERE status = 'waiting' AND wait_reason = 'client-connection'`
	var args []any
	if workflowID != "" {
		query += ` AND workflow_id = $1`
		args = append(args, workflowID)
	}
	rows, err := e.db.Read().QueryContext(ctx, query+` LIMIT 500`, args...)
	if err != nil {
		return 0, fmt.Errorf("find runs waiting for a client: %w", err)
	}
	type waiting struct{ id, workflow, version string }
	var runs []waiting
	for rows.Next() {
		var w waiting
		if err := rows.Scan(&w.id, &w.workflow, &w.version); err != nil {
			rows.Close()
			return 0, err
		}
		runs = append(runs, w)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	bindings := map[string]map[string]string{}
	resumed := 0
	for _, r := range runs {
		b, ok := bindings[r.workflow]
		if !ok {
			if b, err = e.workflows.ClientBindings(ctx, r.workflow); err != nil {
				return resumed, err
			}
			bindings[r.workflow] = b
		}
		if len(b) == 0 {
			continue
		}
		done, err := e.resumeClientWait(ctx, r.id, b)
		if err != nil {
			return resumed, err
		}
		if done {
			resumed++
		}
	}
	if resumed > 0 {
		e.notify(ctx)
	}
	return resumed, nil
}

func (e *Engine) resumeClientWait(ctx context.Context, runID string, bound map[string]string) (bool, error) {
	done := false
	err := e.db.InTx(ctx, func(tx db.Querier) error {
		rows, err := tx.QueryContext(ctx, `SELECT node_id, attempt FROM run_steps WHERE run_id = $1 AND status = 'waiting'`, runID)
		if err != nil {
			return fmt.Errorf("read waiting steps: %w", err)
		}
		type attempt struct {
			entry string
			n     int
		}
		var ids []attempt
		for rows.Next() {
			var a attempt
			if err := rows.Scan(&a.entry, &a.n); err != nil {
				rows.Close()
				return err
			}
			if bound[EntryNode(a.entry)] != "" {
				ids = append(ids, a)
			}
		}
		rows.Close()
		if len(ids) == 0 {
			return nil
		}
		now := e.now()
		se, _ := json.Marshal(clientWaitError)
		for _, id := range ids {
			// Paused, as a held attempt is: the next claim makes a new
			// attempt of the node rather than completing the wait.
			if _, err := tx.ExecContext(ctx, `UPDATE run_steps SET status = 'paused', error = $1, finished_at = $2
				WHERE run_id = $3 AND node_id = $4 AND attempt = $5 AND status = 'waiting'`, string(se), now, runID, id.entry, id.n); err != nil {
				return fmt.Errorf("end client wait: %w", err)
			}
		}
		res, err := tx.ExecContext(ctx, `UPDATE runs SET due_at = $1, updated_at = $1 WHERE id = $2 AND status = 'waiting' AND wait_reason = 'client-connection'`, now, runID)
		if err != nil {
			return fmt.Errorf("make run due: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return errNotWaiting
		}
		done = true
		return e.event(ctx, tx, runID, "resumed", "", "automatically after the client connected the app")
	})
	if err == errNotWaiting {
		return false, nil
	}
	return done, err
}

var errNotWaiting = fmt.Errorf("run no longer waiting")
