package engine

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
	"taskjuice/internal/workflow"
)

// Get returns a run of the workspace.
func (e *Engine) Get(ctx context.Context, workspaceID, runID string) (Run, error) {
	st, err := e.load(ctx, e.db.Read(), runID)
	if err != nil {
		return Run{}, err
	}
	if st.WorkspaceID != workspaceID {
		return Run{}, apperr.ErrNotFound
	}
	return st.Run, nil
}

// Steps lists a run's step attempts in the order they started.
func (e *Engine) Steps(ctx context.Context, workspaceID, runID string) ([]Step, error) {
	run, err := e.Get(ctx, workspaceID, runID)
	if err != nil {
		return nil, err
	}
	rows, err := e.db.Read().QueryContext(ctx, `SELECT id, node_id, attempt, status, COALESCE(input, ''), input_from, COALESCE(output, ''), console,
		COALESCE(error, ''), `+stepKey+`, started_at, finished_at FROM run_steps WHERE run_id = $1 ORDER BY started_at, attempt, id`, runID)
	if err != nil {
		return nil, fmt.Errorf("list steps: %w", err)
	}
	defer rows.Close()
	var out []Step
	for rows.Next() {
		s := Step{RunID: runID}
		var status, input, output, errJSON string
		var from sql.NullString
		var finished sql.NullTime
		if err := rows.Scan(&s.ID, &s.NodeID, &s.Attempt, &status, &input, &from, &output, &s.Console, &errJSON, &s.IdempotencyKey, &s.StartedAt, &finished); err != nil {
			return nil, fmt.Errorf("scan step: %w", err)
		}
		s.Status, s.StartedAt, s.FinishedAt = StepStatus(status), s.StartedAt.UTC(), timePtr(finished)
		if from.Valid {
			s.inputFrom = &from.String
		}
		if input != "" {
			s.Input = json.RawMessage(input)
		}
		if output != "" {
			s.Output = json.RawMessage(output)
		}
		if errJSON != "" {
			s.Error = &StepError{}
			_ = json.Unmarshal([]byte(errJSON), s.Error)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list steps: %w", err)
	}
	fillInputs(out, run.TriggerPayload)
	return out, nil
}

// fillInputs gives each step whose row names where its input came from
// that input: the output of that entry's completed attempt, or the
// trigger payload.
func fillInputs(steps []Step, payload json.RawMessage) {
	done := map[string]json.RawMessage{}
	for _, s := range steps {
		if s.Status == StepCompleted {
			done[s.NodeID] = s.Output
		}
	}
	for i, s := range steps {
		switch {
		case s.inputFrom == nil:
		case *s.inputFrom == "":
			steps[i].Input = nonEmpty(payload)
		default:
			steps[i].Input = nonEmpty(done[*s.inputFrom])
		}
	}
}

// MsgResumeNeedsConnection refuses to resume a run held on a connection
// that is still broken.
const MsgResumeNeedsConnection = "This run is held because its connection needs to be reconnected. Reconnect it first, then resume."

// ConnectionStatus reports a connection's status ("active", "error", …).
type ConnectionStatus func(ctx context.Context, connectionID string) (string, error)

// Pause stops a run by an operator's decision: it does not move on until
// someone resumes it.
func (e *Engine) Pause(ctx context.Context, workspaceID, runID, actor string) error {
	return e.act(ctx, workspaceID, runID, "paused", actor, func(tx db.Querier, st state) error {
		if st.Status.Terminal() || st.Status == StatusPaused {
			return apperr.Conflict("not_pausable", "", fmt.Sprintf("A %s run cannot be paused", st.Status))
		}
		_, err := tx.ExecContext(ctx, `UPDATE runs SET status = 'paused', pause_reason = 'operator', due_at = NULL, updated_at = $1 WHERE id = $2`, e.now(), runID)
		return err
	})
}

// Resume sets a paused run going again from the step it stopped at. A run
// held for reauthorization is refused (409) while its connection is still
// not active.
func (e *Engine) Resume(ctx context.Context, workspaceID, runID, actor string, conn ConnectionStatus) error {
	err := e.act(ctx, workspaceID, runID, "resumed", actor, func(tx db.Querier, st state) error {
		if st.Status != StatusPaused {
			return apperr.Conflict("not_paused", "", "Only a paused run can be resumed")
		}
		if st.PauseReason == PauseReauth && st.PausedConnectionID != "" && conn != nil {
			s, err := conn(ctx, st.PausedConnectionID)
			if err != nil && !apperr.IsNotFound(err) {
				return err
			}
			if s != "active" {
				return apperr.Conflict("connection_not_active", "", MsgResumeNeedsConnection)
			}
		}
		if st.PauseReason == PauseReauth && st.PausedConnectionID != "" {
			if held, err := accountHeld(ctx, tx, st.PausedConnectionID); err != nil || held {
				if err != nil {
					return err
				}
				return apperr.Conflict("kept_held", "", MsgKeptHeld)
			}
		}
		return e.resumeTx(ctx, tx, runID)
	})
	if err == nil {
		e.notify(ctx)
	}
	return err
}

func (e *Engine) resumeTx(ctx context.Context, tx db.Querier, runID string) error {
	now := e.now()
	if _, err := tx.ExecContext(ctx, `UPDATE pending_reauths SET consumed_at = COALESCE(consumed_at, $1) WHERE run_id = $2`, now, runID); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `UPDATE runs SET status = 'running', pause_reason = '', paused_connection_id = NULL, due_at = $1, updated_at = $1
		WHERE id = $2 AND status = 'paused'`, now, runID)
	return err
}

// Cancel stops a run for good.
func (e *Engine) Cancel(ctx context.Context, workspaceID, runID, actor string) error {
	return e.act(ctx, workspaceID, runID, "cancelled", actor, func(tx db.Querier, st state) error {
		if st.Status.Terminal() {
			return apperr.Conflict("finished", "", "This run has already finished")
		}
		return e.finishTx(ctx, tx, runID, StatusCancelled, nil, e.now())
	})
}

// Replay starts a new run from a finished run's trigger payload, on the
// workflow's active version; the original stays as it was.
func (e *Engine) Replay(ctx context.Context, workspaceID, runID, actor string) (string, error) {
	st, err := e.load(ctx, e.db.Read(), runID)
	if err != nil {
		return "", err
	}
	if st.WorkspaceID != workspaceID {
		return "", apperr.ErrNotFound
	}
	if !st.Status.Terminal() {
		return "", apperr.Conflict("not_finished", "", "Only a finished run (completed, failed or cancelled) can be replayed")
	}
	var depth int
	if err := e.db.Read().QueryRowContext(ctx, `SELECT replay_depth FROM runs WHERE id = $1`, runID).Scan(&depth); err != nil {
		return "", err
	}
	if depth+1 > e.o.MaxReplayDepth {
		return "", apperr.Conflict("replay_depth", "", fmt.Sprintf("This run is a replay of a replay %d times over; replay the original instead", depth))
	}
	live, ok, err := e.workflows.Live(ctx, st.WorkflowID)
	if err != nil {
		return "", err
	}
	if !ok || !live.Status.Dispatching() {
		return "", ErrNotDispatching
	}
	id, err := e.start(ctx, live, st.TriggerPayload, "replay", "", origin{replayOf: runID, depth: depth + 1})
	if err != nil {
		return "", err
	}
	err = e.db.InTx(ctx, func(tx db.Querier) error { return e.event(ctx, tx, runID, "replayed", actor, "as "+id) })
	return id, err
}

// act runs a person's action on a run in one transaction with its event.
func (e *Engine) act(ctx context.Context, workspaceID, runID, action, actor string, fn func(tx db.Querier, st state) error) error {
	return e.db.InTx(ctx, func(tx db.Querier) error {
		st, err := e.load(ctx, tx, runID)
		if err != nil {
			return err
		}
		if st.WorkspaceID != workspaceID {
			return apperr.ErrNotFound
		}
		if err := fn(tx, st); err != nil {
			return err
		}
		return e.event(ctx, tx, runID, action, actor, "")
	})
}

// ConsumeReauthorizations acts on connections that came back: each
// reauthorized signal is consumed once; the reauthorizations the runs held
// on that connection were waiting for are consumed; runs of workflows set to
// resume automatically go on by themselves, the others stay paused until
// someone presses Resume. A connection that came back as another account
// keeps all of them held until someone decides. It returns how many runs
// it resumed.
func (e *Engine) ConsumeReauthorizations(ctx context.Context) (int, error) {
	rows, err := e.db.Read().QueryContext(ctx, `SELECT s.id, s.connection_id FROM connection_signals s
		WHERE s.kind = 'reauthorized' AND NOT EXISTS (SELECT 1 FROM signal_consumption c WHERE c.signal_id = s.id AND c.consumer = 'engine')
		ORDER BY s.created_at, s.id LIMIT 100`)
	if err != nil {
		return 0, fmt.Errorf("read signals: %w", err)
	}
	type sig struct{ id, conn string }
	var sigs []sig
	for rows.Next() {
		var s sig
		if err := rows.Scan(&s.id, &s.conn); err != nil {
			rows.Close()
			return 0, err
		}
		sigs = append(sigs, s)
	}
	rows.Close()
	resumed := 0
	for _, s := range sigs {
		var ids []string
		err := e.db.InTx(ctx, func(tx db.Querier) error {
			now := e.now()
			_, err := tx.ExecContext(ctx, `INSERT INTO signal_consumption (signal_id, consumer, consumed_at) VALUES ($1, 'engine', $2)`, s.id, now)
			if db.IsUniqueViolation(err) {
				return errAlreadyConsumed
			}
			if err != nil {
				return err
			}
			// Back as another account: everything stays held until someone
			// decides; the decision raises a signal of its own.
			if held, err := accountHeld(ctx, tx, s.conn); err != nil || held {
				return err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE pending_reauths SET consumed_at = $1 WHERE connection_id = $2 AND consumed_at IS NULL`, now, s.conn); err != nil {
				return err
			}
			ids, err = e.resumeHeld(ctx, tx, s.conn, now, heldFilter{autoOnly: true, detail: "automatically after the connection was reconnected"})
			return err
		})
		if errors.Is(err, errAlreadyConsumed) {
			continue
		}
		if err != nil {
			return resumed, err
		}
		resumed += len(ids)
	}
	if resumed > 0 {
		e.notify(ctx)
	}
	return resumed, nil
}

// heldFilter says which of a connection's held runs resumeHeld resumes,
// and what their events say.
type heldFilter struct {
	// autoOnly keeps the runs that resume by themselves: agent runs, and
	// runs of workflows set to resume automatically.
	autoOnly bool
	// workspaceID, when set, keeps the workspace's runs.
	workspaceID   string
	actor, detail string
}

// resumeHeld sets going again, all at once, the runs held for
// reauthorization on a connection that f keeps, each with its "resumed"
// event, and returns their ids. A connection may hold many thousands of
// runs: one statement resumes them, and their events go in a few
// statements of many rows each.
func (e *Engine) resumeHeld(ctx context.Context, tx db.Querier, connID string, now time.Time, f heldFilter) ([]string, error) {
	query := `UPDATE runs SET status = 'running', pause_reason = '', paused_connection_id = NULL, due_at = $1, updated_at = $1
		WHERE paused_connection_id = $2 AND status = 'paused' AND pause_reason = 'reauth'`
	args := []any{now, connID}
	if f.autoOnly {
		query += ` AND (kind = 'agent' OR workflow_id IN (SELECT id FROM workflows WHERE auto_resume_reauth))`
	}
	if f.workspaceID != "" {
		args = append(args, f.workspaceID)
		query += ` AND workspace_id = $3`
	}
	rows, err := tx.QueryContext(ctx, query+` RETURNING id`, args...)
	if err != nil {
		return nil, fmt.Errorf("resume held runs: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("resume held runs: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("resume held runs: %w", err)
	}
	const perStatement = 1000
	for chunk := range slices.Chunk(ids, perStatement) {
		var b strings.Builder
		args := make([]any, 0, 3+2*len(chunk))
		args = append(args, now, db.NullString(f.actor), f.detail)
		b.WriteString(`INSERT INTO run_events (id, run_id, at, action, actor_user_id, detail) VALUES `)
		for i, id := range chunk {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "($%d, $%d, $1, 'resumed', $2, $3)", len(args)+1, len(args)+2)
			args = append(args, db.NewID(), id)
		}
		if _, err := tx.ExecContext(ctx, b.String(), args...); err != nil {
			return nil, fmt.Errorf("record run events: %w", err)
		}
	}
	return ids, nil
}

var errAlreadyConsumed = errors.New("signal already consumed")

// ResumeHeld resumes every run of the workspace paused for reauthorization
// on a connection that is active again ("Resume all").
func (e *Engine) ResumeHeld(ctx context.Context, workspaceID, connID, actor string, conn ConnectionStatus) (int, error) {
	if s, err := conn(ctx, connID); err != nil || s != "active" {
		if err != nil && !apperr.IsNotFound(err) {
			return 0, err
		}
		return 0, apperr.Conflict("connection_not_active", "", MsgResumeNeedsConnection)
	}
	var ids []string
	err := e.db.InTx(ctx, func(tx db.Querier) error {
		now := e.now()
		if held, err := accountHeld(ctx, tx, connID); err != nil || held {
			if err != nil {
				return err
			}
			return apperr.Conflict("kept_held", "", MsgKeptHeld)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE pending_reauths SET consumed_at = $1 WHERE connection_id = $2 AND consumed_at IS NULL
			AND run_id IN (SELECT id FROM runs WHERE workspace_id = $3 AND status = 'paused' AND pause_reason = 'reauth' AND paused_connection_id = $2)`,
			now, connID, workspaceID); err != nil {
			return err
		}
		var err error
		ids, err = e.resumeHeld(ctx, tx, connID, now, heldFilter{workspaceID: workspaceID, actor: actor, detail: "resume all after reconnect"})
		return err
	})
	if err != nil {
		return 0, err
	}
	if len(ids) > 0 {
		e.notify(ctx)
	}
	return len(ids), nil
}

// Decide records an approval decision on a run waiting for one and sets it
// going again. The step's output is {"approved": bool, "comment": "...",
// "by": userID}. In a run whose arms go on while an Approval in one of
// them waits, the decision is taken by the first Approval waiting; its
// step is marked decided (finished_at), which the worker reads.
func (e *Engine) Decide(ctx context.Context, workspaceID, runID, actor string, approved bool, comment string) error {
	notWaiting := apperr.Conflict("not_waiting_for_approval", "", "This run is not waiting for an approval")
	err := e.act(ctx, workspaceID, runID, "decided", actor, func(tx db.Querier, st state) error {
		if !st.Status.active() {
			return notWaiting
		}
		// The run's row first: a worker about to park the run for the
		// decision locks it too, and then sees the decision (parallel.go).
		now := e.now()
		if _, err := tx.ExecContext(ctx, `UPDATE runs SET due_at = $1, updated_at = $1 WHERE id = $2`, now, runID); err != nil {
			return err
		}
		entry, err := e.waitingApproval(ctx, tx, st)
		if err != nil {
			return err
		}
		if entry == "" {
			return notWaiting
		}
		out, _ := json.Marshal(map[string]any{"approved": approved, "comment": comment, "by": actor})
		_, err = tx.ExecContext(ctx, `UPDATE run_steps SET output = $1, finished_at = $2 WHERE run_id = $3 AND node_id = $4 AND status = 'waiting'`,
			string(out), now, runID, entry)
		return err
	})
	if err == nil {
		e.notify(ctx)
	}
	return err
}

// waitingApproval is the first entry of the run's frontier that is an
// Approval waiting for its decision ("" when none is).
func (e *Engine) waitingApproval(ctx context.Context, tx db.Querier, st state) (string, error) {
	g, err := e.graph(ctx, st.VersionID)
	if err != nil {
		return "", err
	}
	rows, err := tx.QueryContext(ctx, `SELECT node_id FROM run_steps WHERE run_id = $1 AND status = 'waiting' AND finished_at IS NULL`, st.ID)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	waiting := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return "", err
		}
		waiting[id] = true
	}
	if err := rows.Err(); err != nil {
		return "", err
	}
	for _, f := range st.frontier {
		if n, ok := g.Node(EntryNode(f)); ok && n.Kind == workflow.NodeApproval && waiting[f] {
			return f, nil
		}
	}
	return "", nil
}

// ListFilter selects runs.
type ListFilter struct {
	Status      Status
	PauseReason PauseReason
	// IDPrefix keeps runs whose id starts with it.
	IDPrefix string
	// Before is a keyset cursor: runs created before this run (its id).
	Before string
	Limit  int
	// Failure keeps the failed runs of one group of the failed-runs inbox
	// (not yet retried or replayed).
	Failure *FailureKey
	// WorkflowID, Source (how the run started: manual, webhook, schedule,
	// retry, …), ErrorCode (of a failed run) and the creation time range
	// [From, To) narrow the list; zero values do not.
	WorkflowID, Source, ErrorCode string
	From, To                      time.Time
	// Value keeps runs with a value in their trigger payload or a step's
	// output (once indexed: see IndexRuns).
	Value *ValueFilter
}

// where is the filter's conditions on runs r of the workspace, and their
// arguments ($1 is the workspace).
func (f ListFilter) where(workspaceID string) ([]string, []any) {
	where := []string{"r.workspace_id = $1"}
	args := []any{workspaceID}
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if f.Status != "" {
		where = append(where, "r.status = "+arg(string(f.Status)))
	}
	if f.PauseReason != "" {
		if f.Status == "" {
			where = append(where, "r.status = 'paused'") // only a paused run has a reason
		}
		where = append(where, "r.pause_reason = "+arg(string(f.PauseReason)))
	}
	if v := f.Value; v != nil {
		where = append(where, "r.id IN (SELECT v.run_id FROM run_values v WHERE v.workspace_id = $1 AND v.field = "+arg(v.Field)+" AND v.value = "+arg(v.key())+")")
	}
	if f.IDPrefix != "" {
		where = append(where, "r.id LIKE "+arg(strings.ReplaceAll(f.IDPrefix, "%", "")+"%"))
	}
	if f.WorkflowID != "" {
		where = append(where, "r.workflow_id = "+arg(f.WorkflowID))
	}
	if f.Source != "" {
		where = append(where, "r.source = "+arg(f.Source))
	}
	if f.ErrorCode != "" {
		where = append(where, "r.status = 'failed'", "r.error_code = "+arg(f.ErrorCode))
	}
	if !f.From.IsZero() {
		where = append(where, "r.created_at >= "+arg(f.From))
	}
	if !f.To.IsZero() {
		where = append(where, "r.created_at < "+arg(f.To))
	}
	if k := f.Failure; k != nil {
		where = append(where, "r.status = 'failed'", "r.workflow_id = "+arg(k.WorkflowID), "COALESCE(r.failed_node, '') = "+arg(k.Node),
			"COALESCE(r.error_code, '') = "+arg(k.ErrorCode), unhandled)
	}
	return where, args
}

// RunRow is a run as lists show it.
type RunRow struct {
	Run
	WorkflowName string `json:"workflowName"`
}

// List returns the workspace's runs, newest first, a page at a time.
func (e *Engine) List(ctx context.Context, workspaceID string, f ListFilter) ([]RunRow, error) {
	if f.Limit <= 0 || f.Limit > 200 {
		f.Limit = 50
	}
	vf := f.Value
	f.Value = nil // a search drives the query instead of narrowing it
	where, args := f.where(workspaceID)
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	from, order, cursor := "runs r", "r.created_at DESC, r.id DESC", "(r.created_at, r.id)"
	if vf != nil {
		// Newest first along the search's index, each run checked against
		// the other filters.
		from, order, cursor = "run_values sv JOIN runs r ON r.id = sv.run_id", "sv.created_at DESC, sv.run_id DESC", "(sv.created_at, sv.run_id)"
		where = append(where, "sv.workspace_id = $1", "sv.field = "+arg(vf.Field), "sv.value = "+arg(vf.key()))
	}
	if f.Before != "" {
		// Newest first by creation, the id breaking ties: the cursor run's
		// place in that order.
		c := arg(f.Before)
		where = append(where, cursor+" < ((SELECT b.created_at FROM runs b WHERE b.id = "+c+"), "+c+")")
	}
	rows, err := e.db.Read().QueryContext(ctx, `SELECT r.id, r.workflow_id, w.name, r.kind, r.status, r.source, r.pause_reason, COALESCE(r.paused_connection_id, ''),
		r.steps_done, r.created_at, r.started_at, r.finished_at FROM `+from+` JOIN workflows w ON w.id = r.workflow_id
		WHERE `+strings.Join(where, " AND ")+` ORDER BY `+order+` LIMIT `+arg(f.Limit), e.db.PlanWithValues(args)...)
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	defer rows.Close()
	var out []RunRow
	for rows.Next() {
		var r RunRow
		var status string
		var started, finished sql.NullTime
		if err := rows.Scan(&r.ID, &r.WorkflowID, &r.WorkflowName, &r.Kind, &status, &r.Source, &r.PauseReason, &r.PausedConnectionID,
			&r.StepsDone, &r.CreatedAt, &started, &finished); err != nil {
			return nil, fmt.Errorf("scan run: %w", err)
		}
		r.Status, r.WorkspaceID, r.CreatedAt = Status(status), workspaceID, r.CreatedAt.UTC()
		r.StartedAt, r.FinishedAt = timePtr(started), timePtr(finished)
		out = append(out, r)
	}
	return out, rows.Err()
}
