package engine

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"taskjuice/internal/db"
	"taskjuice/internal/workflow"
)

// defaultAttempts is how many times a retryable step failure is tried.
const defaultAttempts = 3

// advance runs the claimed run's steps one at a time, committing each
// result before the next starts, until the run finishes, parks or is due
// again later. It gives the lease up when it stops.
func (e *Engine) advance(ctx context.Context, runID string) error {
	defer func() {
		_, _ = e.db.Write().ExecContext(context.WithoutCancel(ctx), `UPDATE runs SET lease_owner = '', lease_until = NULL WHERE id = $1 AND lease_owner = $2`, runID, e.o.Owner)
	}()
	// A run executes the version it started on: its graph is read once.
	var g *workflow.Graph
	for ctx.Err() == nil {
		st, err := e.load(ctx, e.db.Read(), runID)
		if err != nil {
			return err
		}
		if st.Status != StatusPending && st.Status != StatusRunning && st.Status != StatusWaiting {
			return e.park(ctx, runID) // paused or finished meanwhile
		}
		if len(st.frontier) == 0 {
			return e.finish(ctx, runID, StatusCompleted, nil)
		}
		if g == nil {
			graph, err := e.workflows.GraphOf(ctx, st.VersionID)
			if err != nil {
				return err
			}
			g = &graph
		}
		more, err := e.step(ctx, st, *g)
		if err != nil || !more {
			return err
		}
		// Keep the lease while working.
		if err := e.extendLease(ctx, runID); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// errLeaseLost stops a worker whose lease lapsed and was taken over: the
// run is someone else's now.
var errLeaseLost = errors.New("lease lost to another worker")

func (e *Engine) extendLease(ctx context.Context, runID string) error {
	res, err := e.db.Write().ExecContext(ctx, `UPDATE runs SET lease_until = $1 WHERE id = $2 AND lease_owner = $3`,
		e.now().Add(e.o.Lease), runID, e.o.Owner)
	if err != nil {
		return fmt.Errorf("extend lease: %w", err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return errLeaseLost
	}
	return nil
}

// holdLease extends the lease while a step executes, so a step longer than
// the lease is not taken over and executed again by another worker. If the
// lease is lost all the same, it cancels the step.
func (e *Engine) holdLease(ctx context.Context, runID string, lost context.CancelFunc) {
	t := time.NewTicker(e.o.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := e.extendLease(ctx, runID); errors.Is(err, errLeaseLost) {
			lost()
			return
		}
	}
}

func (e *Engine) park(ctx context.Context, runID string) error {
	_, err := e.db.Write().ExecContext(ctx, `UPDATE runs SET due_at = NULL WHERE id = $1 AND status IN ('paused', 'completed', 'failed', 'cancelled')`, runID)
	return err
}

// lastStep is the latest attempt of a node in a run.
func (e *Engine) lastStep(ctx context.Context, runID, nodeID string) (Step, bool, error) {
	var s Step
	var status string
	var output sql.NullString
	err := e.db.Read().QueryRowContext(ctx, `SELECT id, attempt, status, COALESCE(output, ''), idempotency_key FROM run_steps
		WHERE run_id = $1 AND node_id = $2 ORDER BY attempt DESC LIMIT 1`, runID, nodeID).Scan(&s.ID, &s.Attempt, &status, &output, &s.IdempotencyKey)
	if errors.Is(err, sql.ErrNoRows) {
		return Step{}, false, nil
	}
	if err != nil {
		return Step{}, false, fmt.Errorf("read step: %w", err)
	}
	s.Status, s.Output, s.NodeID = StepStatus(status), json.RawMessage(output.String), nodeID
	return s, true, nil
}

// step runs the first node of the frontier. It reports whether the run can
// go on at once.
func (e *Engine) step(ctx context.Context, st state, g workflow.Graph) (bool, error) {
	// A frontier entry is a node id, or "node@loop#i" inside iteration i of
	// a Loop; step rows carry the entry, so each iteration has its own
	// attempts and idempotency keys.
	nodeID := st.frontier[0]
	node, ok := g.Node(EntryNode(nodeID))
	if !ok {
		return false, e.finish(ctx, st.ID, StatusFailed, &StepError{Code: "GRAPH_INVALID", Message: fmt.Sprintf("The version has no step %q", EntryNode(nodeID))})
	}
	prev, hasPrev, err := e.lastStep(ctx, st.ID, nodeID)
	if err != nil {
		return false, err
	}
	// A wait that has come due completes its step without running it again.
	if hasPrev && prev.Status == StepWaiting {
		if e.waitOver(ctx, st.ID) {
			return e.commit(ctx, st, g, node, prev, Outcome{Output: json.RawMessage(nonEmpty(prev.Output))}, calledFailure(node, prev.Output))
		}
		return false, e.park(ctx, st.ID)
	}
	attempt, key := 1, fmt.Sprintf("%s:%s:1", st.ID, nodeID)
	switch {
	case hasPrev && prev.Status == StepRunning:
		// Interrupted (the process died mid-step): try again under the same
		// idempotency key, so the app can tell it is the same effect.
		attempt, key = prev.Attempt, prev.IdempotencyKey
	case hasPrev:
		attempt = prev.Attempt + 1
		key = fmt.Sprintf("%s:%s:%d", st.ID, nodeID, attempt)
	}
	scope, input, err := e.scope(ctx, st, nodeID)
	if err != nil {
		return false, err
	}
	now := e.now()
	stepID := db.NewID()
	if hasPrev && prev.Status == StepRunning {
		stepID = prev.ID
	} else {
		if _, err := e.db.Write().ExecContext(ctx, `INSERT INTO run_steps (id, run_id, node_id, attempt, status, input, idempotency_key, started_at)
			VALUES ($1, $2, $3, $4, 'running', $5, $6, $7)`, stepID, st.ID, nodeID, attempt, string(nonEmpty(input)), key, now); err != nil {
			return false, fmt.Errorf("record step: %w", err)
		}
	}
	if st.Status == StatusPending {
		if _, err := e.db.Write().ExecContext(ctx, `UPDATE runs SET status = 'running', started_at = COALESCE(started_at, $1), updated_at = $1
			WHERE id = $2 AND status = 'pending'`, now, st.ID); err != nil {
			return false, fmt.Errorf("start run: %w", err)
		}
	}
	cur := Step{ID: stepID, NodeID: nodeID, Attempt: attempt, IdempotencyKey: key}
	sctx, cancel := context.WithCancel(ctx)
	held := make(chan struct{})
	go func() {
		defer close(held)
		e.holdLease(sctx, st.ID, cancel)
	}()
	out, runErr := e.execute(sctx, st, node, input, scope, key, &cur)
	cancel()
	<-held
	return e.commit(ctx, st, g, node, cur, out, runErr)
}

func nonEmpty(b json.RawMessage) json.RawMessage {
	if len(b) == 0 {
		return json.RawMessage("null")
	}
	return b
}

func (e *Engine) waitOver(ctx context.Context, runID string) bool {
	var due sql.NullTime
	_ = e.db.Read().QueryRowContext(ctx, `SELECT due_at FROM runs WHERE id = $1`, runID).Scan(&due)
	return due.Valid && !due.Time.After(e.now())
}

// scope gathers what expressions see: the trigger payload, every completed
// step's output, and the previous step's output as $input.
func (e *Engine) scope(ctx context.Context, st state, entry string) (Scope, json.RawMessage, error) {
	s := Scope{Trigger: st.TriggerPayload, Steps: map[string]StepData{}, Meta: map[string]any{
		"runId": st.ID, "workflowId": st.WorkflowID, "versionId": st.VersionID, "source": st.Source,
	}}
	rows, err := e.db.Read().QueryContext(ctx, `SELECT node_id, attempt, COALESCE(output, 'null'), started_at, finished_at FROM run_steps
		WHERE run_id = $1 AND status = 'completed' ORDER BY finished_at, id`, st.ID)
	if err != nil {
		return Scope{}, nil, fmt.Errorf("read steps: %w", err)
	}
	defer rows.Close()
	var last json.RawMessage
	for rows.Next() {
		var node, output string
		var attempt int
		var started time.Time
		var finished sql.NullTime
		if err := rows.Scan(&node, &attempt, &output, &started, &finished); err != nil {
			return Scope{}, nil, err
		}
		meta := map[string]any{"attempt": attempt, "startedAt": started.UTC()}
		if finished.Valid {
			meta["finishedAt"] = finished.Time.UTC()
		}
		if it := entryIteration(node); it.loop != "" {
			meta["iteration"] = it.index
		}
		s.Steps[EntryNode(node)] = StepData{Data: json.RawMessage(output), Meta: meta}
		last = json.RawMessage(output)
	}
	if err := rows.Err(); err != nil {
		return Scope{}, nil, err
	}
	if last == nil {
		last = st.TriggerPayload
	}
	s.Input = last
	// Inside a loop, $meta.loop is the current item and its index.
	if it := entryIteration(entry); it.loop != "" {
		items, err := e.loopItems(ctx, st.ID, it.loop)
		if err != nil {
			return Scope{}, nil, err
		}
		if it.index < len(items) {
			s.Meta["loop"] = map[string]any{"index": it.index, "item": items[it.index], "count": len(items)}
		}
	}
	return s, last, nil
}

// execute evaluates the node's config and runs its executor, turning a
// panic into an INTERNAL step error.
func (e *Engine) execute(ctx context.Context, st state, node workflow.Node, input json.RawMessage, s Scope, key string, cur *Step) (out Outcome, err error) {
	defer func() {
		if p := recover(); p != nil {
			e.o.Log.Error("step panicked", "run", st.ID, "node", node.ID, "panic", p)
			err = &StepError{Code: "INTERNAL", Message: "The step failed unexpectedly; the details are in the server log."}
		}
	}()
	exec, ok := e.exec[node.Kind]
	switch node.Kind {
	case workflow.NodeCallWorkflow:
		exec, ok = e.callWorkflow, true
	case workflow.NodeAgent:
		exec, ok = e.agent, true
	}
	if !ok {
		return Outcome{}, &StepError{Code: "NOT_SUPPORTED", Message: fmt.Sprintf("This TaskJuice cannot run %s steps yet", node.Kind.Label())}
	}
	cfg := node.Config
	if e.eval != nil && len(cfg) > 0 {
		if cfg, err = e.eval(ctx, cfg, s); err != nil {
			return Outcome{}, err
		}
	}
	var console strings.Builder
	sctx, cancel := context.WithTimeout(ctx, e.o.StepTimeout)
	defer cancel()
	out, err = exec(sctx, Call{Run: st.Run, Node: node, Entry: cur.NodeID, Config: cfg, Input: input, IdempotencyKey: key, Console: &console})
	cur.Console = console.String()
	if err == nil && sctx.Err() != nil && ctx.Err() == nil {
		err = &StepError{Code: "TIMEOUT", Message: fmt.Sprintf("The step took longer than %s", e.o.StepTimeout), Retryable: true}
	}
	return out, err
}

// commit records a step's result and moves the run on, in one transaction.
func (e *Engine) commit(ctx context.Context, st state, g workflow.Graph, node workflow.Node, cur Step, out Outcome, runErr error) (bool, error) {
	now := e.now()
	more := false
	err := e.db.InTx(ctx, func(tx db.Querier) error {
		// A worker that lost its lease records nothing: the new owner
		// retries the step under the same idempotency key. Extending the
		// lease first also locks the run's row until this commits, so no
		// one can take it over in between.
		res, err := tx.ExecContext(ctx, `UPDATE runs SET lease_until = $1 WHERE id = $2 AND lease_owner = $3`, now.Add(e.o.Lease), st.ID, e.o.Owner)
		if err != nil {
			return fmt.Errorf("extend lease: %w", err)
		}
		if n, err := res.RowsAffected(); err == nil && n == 0 {
			return errLeaseLost
		}
		var status string
		if err := tx.QueryRowContext(ctx, `SELECT status FROM runs WHERE id = $1`, st.ID).Scan(&status); err != nil {
			return fmt.Errorf("read run status: %w", err)
		}
		// An operator may have paused or cancelled the run meanwhile: the
		// step's result is still kept, the run stays as they left it.
		active := status == string(StatusPending) || status == string(StatusRunning) || status == string(StatusWaiting)
		var reauth *ReauthError
		switch {
		case runErr == nil && (out.WaitUntil != nil || out.WaitFor != ""):
			output, _ := json.Marshal(out.Output)
			if _, err := tx.ExecContext(ctx, `UPDATE run_steps SET status = 'waiting', output = $1, console = $2 WHERE id = $3`,
				string(output), cur.Console, cur.ID); err != nil {
				return err
			}
			if !active {
				return nil
			}
			var due sql.NullTime
			reason := out.WaitFor
			if out.WaitUntil != nil {
				due = sql.NullTime{Time: out.WaitUntil.UTC(), Valid: true}
				reason = "delay"
			}
			_, err := tx.ExecContext(ctx, `UPDATE runs SET status = 'waiting', wait_reason = $1, due_at = $2, updated_at = $3 WHERE id = $4`,
				reason, due, now, st.ID)
			return err
		case runErr == nil:
			output, err := json.Marshal(out.Output)
			if err != nil {
				return fmt.Errorf("encode output: %w", err)
			}
			if _, err := tx.ExecContext(ctx, `UPDATE run_steps SET status = 'completed', output = $1, console = $2, finished_at = $3 WHERE id = $4`,
				string(output), cur.Console, now, cur.ID); err != nil {
				return err
			}
			next, err := e.advanceFrontier(ctx, st, g, node, cur.NodeID, out)
			var se *StepError
			if errors.As(err, &se) {
				return e.finishTx(ctx, tx, st.ID, StatusFailed, se, now)
			}
			if err != nil {
				return err
			}
			frontier, _ := json.Marshal(next)
			if _, err := tx.ExecContext(ctx, `UPDATE runs SET frontier = $1, steps_done = steps_done + 1, wait_reason = '', updated_at = $2 WHERE id = $3`,
				string(frontier), now, st.ID); err != nil {
				return err
			}
			if !active {
				return nil
			}
			if status == string(StatusWaiting) {
				if _, err := tx.ExecContext(ctx, `UPDATE runs SET status = 'running' WHERE id = $1`, st.ID); err != nil {
					return err
				}
			}
			more = true
			return nil
		case errors.As(runErr, &reauth):
			se := &StepError{Code: "AUTH_REAUTHORIZATION_NEEDED", Message: "The connection needs to be reconnected; the run is held until then.", Detail: reauth.Reason}
			if err := e.failStep(ctx, tx, cur, se, "paused", now); err != nil {
				return err
			}
			if !active {
				return nil
			}
			if _, err := tx.ExecContext(ctx, `UPDATE runs SET status = 'paused', pause_reason = 'reauth', paused_connection_id = $1, due_at = NULL, updated_at = $2 WHERE id = $3`,
				reauth.ConnectionID, now, st.ID); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO pending_reauths (run_id, connection_id, created_at) VALUES ($1, $2, $3)
				ON CONFLICT (run_id, connection_id) DO UPDATE SET consumed_at = NULL, created_at = excluded.created_at`, st.ID, reauth.ConnectionID, now); err != nil {
				return fmt.Errorf("record pending reauthorization: %w", err)
			}
			return e.event(ctx, tx, st.ID, "held-reauth", "", "connection "+reauth.ConnectionID)
		default:
			se := asStepError(runErr)
			if se.Code == "INTERNAL" {
				e.o.Log.Error("step failed", "run", st.ID, "node", node.ID, "err", runErr)
			}
			if err := e.failStep(ctx, tx, cur, se, "failed", now); err != nil {
				return err
			}
			if !active {
				return nil
			}
			if se.Retryable && cur.Attempt < attemptsOf(node) {
				backoff := e.o.RetryBackoff << (cur.Attempt - 1)
				_, err := tx.ExecContext(ctx, `UPDATE runs SET due_at = $1, updated_at = $2 WHERE id = $3`, now.Add(backoff), now, st.ID)
				return err
			}
			return e.finishTx(ctx, tx, st.ID, StatusFailed, se, now)
		}
	})
	return more, err
}

func (e *Engine) failStep(ctx context.Context, tx db.Querier, cur Step, se *StepError, status string, now time.Time) error {
	b, _ := json.Marshal(se)
	_, err := tx.ExecContext(ctx, `UPDATE run_steps SET status = $1, error = $2, console = $3, finished_at = $4 WHERE id = $5`,
		status, string(b), cur.Console, now, cur.ID)
	return err
}

func attemptsOf(n workflow.Node) int {
	if n.Kind == workflow.NodeHTTP {
		if cfg, err := workflow.DecodeConfig(n); err == nil {
			if h := cfg.(*workflow.HTTPConfig); h.Retry != nil && h.Retry.MaxAttempts > 0 {
				return h.Retry.MaxAttempts
			}
		}
	}
	return defaultAttempts
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func (e *Engine) finish(ctx context.Context, runID string, status Status, se *StepError) error {
	return e.db.InTx(ctx, func(tx db.Querier) error { return e.finishTx(ctx, tx, runID, status, se, e.now()) })
}

func (e *Engine) finishTx(ctx context.Context, tx db.Querier, runID string, status Status, se *StepError, now time.Time) error {
	var errJSON sql.NullString
	if se != nil {
		b, _ := json.Marshal(se)
		errJSON = sql.NullString{String: string(b), Valid: true}
	}
	res, err := tx.ExecContext(ctx, `UPDATE runs SET status = $1, error = $2, due_at = NULL, finished_at = $3, updated_at = $3
		WHERE id = $4 AND status NOT IN ('completed', 'failed', 'cancelled')`, string(status), errJSON, now, runID)
	if err != nil {
		return fmt.Errorf("finish run: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return e.wakeCaller(ctx, tx, runID, status, now)
	}
	return nil
}

func (e *Engine) event(ctx context.Context, tx db.Querier, runID, action, actor, detail string) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO run_events (id, run_id, at, action, actor_user_id, detail) VALUES ($1, $2, $3, $4, $5, $6)`,
		db.NewID(), runID, e.now(), action, db.NullString(actor), detail)
	if err != nil {
		return fmt.Errorf("record run event: %w", err)
	}
	return nil
}
