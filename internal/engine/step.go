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

	"taskjuice/internal/db"
	"taskjuice/internal/workflow"
)

// defaultAttempts is how many times a retryable step failure is tried.
const defaultAttempts = 3

// claimed is a run whose lease a worker holds. While it holds the run the
// worker keeps what the next steps need in memory — the frontier, the
// latest attempt of each entry, and the scope expressions see — and only
// writes: nobody else records the run's steps meanwhile, since every write
// of the worker is fenced on its lease token and another worker takes the
// run over only once the lease has lapsed.
type claimed struct {
	state
	token string
	g     *workflow.Graph
	// last is the latest attempt of each frontier entry.
	last map[string]Step
	// scope holds $trigger, $steps and $input as of the last completed step.
	scope Scope
	// released says the lease was given up with the last commit.
	released bool
	// inputFrom is the frontier entry whose output scope.Input is ("" for
	// the trigger payload).
	inputFrom string
}

// current is the attempt a worker is making.
type current struct {
	Step
	// recorded says its row is written already: recorded as running before
	// it executed, or left running or waiting by an earlier worker.
	recorded bool
}

func (s Status) active() bool {
	return s == StatusPending || s == StatusRunning || s == StatusWaiting
}

// advance runs the claimed run's steps one at a time, committing each
// result before the next starts, until the run finishes, parks or is due
// again later, or stop is closed (the process is stopping: the step being
// executed is finished and recorded, no other is started). It gives the
// lease up when it stops.
func (e *Engine) advance(ctx context.Context, c claimed, stop <-chan struct{}) error {
	defer func() {
		if !c.released {
			e.release(context.WithoutCancel(ctx), c.ID, c.token)
		}
	}()
	// The lease is kept for as long as the worker holds the run, however
	// long a step takes; if it is lost all the same, the step is cancelled.
	rctx, lost := context.WithCancelCause(ctx)
	kept := make(chan struct{})
	// Read before the goroutine starts: the worker rewrites c as it goes.
	id, token := c.ID, c.token
	go func() {
		defer close(kept)
		e.keepLease(rctx, id, token, lost)
	}()
	defer func() { lost(nil); <-kept }()

	if err := e.hold(rctx, &c); err != nil {
		return err
	}
	for rctx.Err() == nil {
		select {
		case <-stop:
			return nil // given up for another process to take at once
		default:
		}
		if !c.Status.active() {
			return e.park(rctx, c.ID) // paused or finished meanwhile
		}
		if len(c.frontier) == 0 {
			return e.finish(rctx, c.ID, StatusCompleted, nil)
		}
		more, err := e.step(rctx, &c)
		if err != nil || !more {
			return err
		}
	}
	return context.Cause(rctx)
}

// hold reads what the worker keeps in memory: the run's graph and its
// steps so far.
func (e *Engine) hold(ctx context.Context, c *claimed) error {
	if c.g == nil {
		g, err := e.graph(ctx, c.VersionID)
		if err != nil {
			return err
		}
		c.g = g
	}
	c.last = map[string]Step{}
	c.scope = Scope{Trigger: c.TriggerPayload, Steps: map[string]StepData{}, Input: c.TriggerPayload}
	c.inputFrom = ""
	// A run no worker has taken up yet has no steps: every write of a step
	// moves a pending run on (to running, waiting or done), and a retry
	// that starts with copied steps counts them in steps_done. Not reading
	// them saves a statement per run.
	if c.Status == StatusPending && c.StepsDone == 0 {
		return nil
	}
	// The steps' inputs are not read: a worker derives each step's input
	// from the scope, and only the run's page shows them.
	rows, err := e.db.Read().QueryContext(ctx, `SELECT id, node_id, attempt, status, COALESCE(output, ''), `+stepKey+`,
		started_at, finished_at FROM run_steps WHERE run_id = $1`, c.ID)
	if err != nil {
		return fmt.Errorf("read steps: %w", err)
	}
	defer rows.Close()
	var done []Step
	for rows.Next() {
		s := Step{RunID: c.ID}
		var status, output string
		var finished sql.NullTime
		if err := rows.Scan(&s.ID, &s.NodeID, &s.Attempt, &status, &output, &s.IdempotencyKey, &s.StartedAt, &finished); err != nil {
			return fmt.Errorf("read steps: %w", err)
		}
		s.Status, s.StartedAt, s.FinishedAt = StepStatus(status), s.StartedAt.UTC(), timePtr(finished)
		s.Output = json.RawMessage(output)
		if prev, ok := c.last[s.NodeID]; !ok || s.Attempt > prev.Attempt {
			c.last[s.NodeID] = s
		}
		if s.Status == StepCompleted {
			done = append(done, s)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read steps: %w", err)
	}
	// In the order they finished: a node's latest output is what $steps
	// shows, and the very latest is $input.
	slices.SortFunc(done, func(a, b Step) int {
		if c := compareTimes(a.FinishedAt, b.FinishedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	for _, s := range done {
		c.see(s)
	}
	return nil
}

func compareTimes(a, b *time.Time) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return -1
	case b == nil:
		return 1
	}
	return a.Compare(*b)
}

// see adds a completed step to the scope.
func (c *claimed) see(s Step) {
	meta := map[string]any{"attempt": s.Attempt, "startedAt": s.StartedAt}
	if s.FinishedAt != nil {
		meta["finishedAt"] = *s.FinishedAt
	}
	if it := entryIteration(s.NodeID); it.loop != "" {
		meta["iteration"] = it.index
	}
	out := json.RawMessage(nonEmpty(s.Output))
	c.scope.Steps[EntryNode(s.NodeID)] = StepData{Data: out, Meta: meta}
	c.scope.Input, c.inputFrom = out, s.NodeID
}

// scopeFor is what the expressions of a frontier entry see, and the
// entry whose output is its $input ("" for the trigger payload): the
// trigger payload, every completed step's output, $input, and $meta
// (inside a loop, $meta.loop is the current item). $input is the output
// of the step run just before; while arms are under way, of the latest
// step leading to the entry, so that an arm reads its own.
func (c *claimed) scopeFor(entry string) (Scope, string) {
	s, from := c.scope, c.inputFrom
	if len(c.frontier) > 1 {
		if f, ok := c.latestBefore(entry); ok {
			s.Input, from = nonEmpty(c.last[f].Output), f
		}
	}
	s.Meta = map[string]any{"runId": c.ID, "workflowId": c.WorkflowID, "versionId": c.VersionID, "source": c.Source}
	if its := iterationsOf(entry); len(its) > 0 {
		it := its[len(its)-1]
		if items := c.loopItems(loopEntryOf(its)); it.index < len(items) {
			s.Meta["loop"] = map[string]any{"index": it.index, "item": items[it.index], "count": len(items)}
		}
	}
	return s, from
}

// latestBefore is the completed entry of a step leading to entry that
// finished last.
func (c *claimed) latestBefore(entry string) (string, bool) {
	preds := c.g.Predecessors(EntryNode(entry))
	var best string
	var at *time.Time
	for f, s := range c.last {
		if s.Status != StepCompleted || !slices.Contains(preds, EntryNode(f)) {
			continue
		}
		if best == "" || compareTimes(s.FinishedAt, at) > 0 || (compareTimes(s.FinishedAt, at) == 0 && f > best) {
			best, at = f, s.FinishedAt
		}
	}
	return best, best != ""
}

// reload reads the run and its steps again, after a commit whose effects
// are not mirrored in memory.
func (e *Engine) reload(ctx context.Context, c *claimed) error {
	st, err := e.load(ctx, e.db.Read(), c.ID)
	if err != nil {
		return err
	}
	c.state = st
	return e.hold(ctx, c)
}

// errLeaseLost stops a worker whose lease lapsed and was taken over: the
// run is someone else's now.
var errLeaseLost = errors.New("lease lost to another worker")

func (e *Engine) extendLease(ctx context.Context, runID, token string) error {
	res, err := e.db.Write().ExecContext(ctx, `UPDATE runs SET lease_until = $1 WHERE id = $2 AND lease_owner = $3`,
		e.now().Add(e.o.Lease), runID, token)
	if err != nil {
		return fmt.Errorf("extend lease: %w", err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return errLeaseLost
	}
	return nil
}

// keepLease extends the lease while the worker holds the run (every commit
// extends it too), so a step longer than the lease is not taken over and
// executed again by another worker. If the lease is lost all the same, it
// cancels the worker.
func (e *Engine) keepLease(ctx context.Context, runID, token string, lost context.CancelCauseFunc) {
	t := time.NewTicker(e.o.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := e.extendLease(ctx, runID, token); errors.Is(err, errLeaseLost) {
			lost(errLeaseLost)
			return
		}
	}
}

func (e *Engine) release(ctx context.Context, runID, token string) {
	if _, err := e.db.Write().ExecContext(ctx, `UPDATE runs SET lease_owner = '', lease_until = NULL WHERE id = $1 AND lease_owner = $2`, runID, token); err != nil {
		e.o.Log.Warn("release run", "run", runID, "err", err)
	}
}

func (e *Engine) park(ctx context.Context, runID string) error {
	_, err := e.db.Write().ExecContext(ctx, `UPDATE runs SET due_at = NULL WHERE id = $1 AND status IN ('paused', 'completed', 'failed', 'cancelled')`, runID)
	return err
}

// lastStep is the latest attempt of a node in a run, as recorded.
func (e *Engine) lastStep(ctx context.Context, runID, nodeID string) (Step, bool, error) {
	var s Step
	var status string
	var output sql.NullString
	err := e.db.Read().QueryRowContext(ctx, `SELECT id, attempt, status, COALESCE(output, ''), `+stepKey+` FROM run_steps
		WHERE run_id = $1 AND node_id = $2 ORDER BY attempt DESC LIMIT 1`, runID, nodeID).Scan(&s.ID, &s.Attempt, &status, &output, &s.IdempotencyKey)
	if errors.Is(err, sql.ErrNoRows) {
		return Step{}, false, nil
	}
	if err != nil {
		return Step{}, false, fmt.Errorf("read step: %w", err)
	}
	s.Status, s.Output, s.RunID, s.NodeID = StepStatus(status), json.RawMessage(output.String), runID, nodeID
	return s, true, nil
}

// recordsFirst says whether a node's step row is written, as running,
// before it executes: nodes with effects outside the run (an app call, a
// request, a called run, an agent's turn, a model call), so that an effect
// in flight is on record and on the run's page, and a run an operator
// paused meanwhile does not start it. Other nodes finish at once; their
// row is written once, with the result.
func recordsFirst(n workflow.Node) bool {
	switch n.Kind {
	case workflow.NodeHTTP, workflow.NodeAction, workflow.NodeCallWorkflow, workflow.NodeAgent, workflow.NodeAIGenerate, workflow.NodeAIExtract:
		return true
	}
	return false
}

// step runs the first entry of the frontier, or, while arms are under
// way, every entry that can start now (parallel.go). It reports whether
// the run can go on at once.
func (e *Engine) step(ctx context.Context, c *claimed) (bool, error) {
	// A frontier entry is a node id, or "node@loop#i" inside iteration i of
	// a Loop; step rows carry the entry, so each iteration has its own
	// attempts and idempotency keys.
	now := e.now()
	if !c.nextReady(now) && c.anyWaits() {
		decided, err := e.waitAll(ctx, c)
		if err != nil || !decided {
			return false, err
		}
		return true, e.reload(ctx, c)
	}
	if arms := c.armsReady(now); len(arms) > 1 {
		return e.stepArms(ctx, c, arms)
	}
	entry := c.frontier[0]
	node, ok := c.g.Node(EntryNode(entry))
	if !ok {
		return false, e.finish(ctx, c.ID, StatusFailed, &StepError{Code: "GRAPH_INVALID", Message: fmt.Sprintf("The version has no step %q", EntryNode(entry))})
	}
	// A wait that has come due completes its step without running it again.
	if prev, ok := c.last[entry]; ok && prev.Status == StepWaiting {
		if c.waitOver(entry, now) {
			return e.commit(ctx, c, node, current{Step: prev, recorded: true}, Outcome{Output: json.RawMessage(nonEmpty(prev.Output))}, calledFailure(node, prev.Output))
		}
		return false, e.park(ctx, c.ID)
	}
	a, goOn, err := e.begin(ctx, c, entry, node)
	if err != nil || !goOn {
		return false, err
	}
	e.run(ctx, c.state, a)
	return e.commit(ctx, c, node, a.cur, a.out, a.err)
}

// waitOver reports whether a waiting entry's wait has come due: a Delay's
// time, an Approval's decision, a called run's end, or the run made due by
// what it waited for (an agent's callback, a client's connection).
func (c *claimed) waitOver(entry string, now time.Time) bool {
	if until, ok := c.sleepsUntil(entry); ok {
		return !until.After(now)
	}
	if node, ok := c.g.Node(EntryNode(entry)); ok && (node.Kind == workflow.NodeApproval || node.Kind == workflow.NodeCallWorkflow) {
		return !c.awaitsEvent(entry)
	}
	return c.due.Valid && !c.due.Time.After(now)
}

// attempt is one execution of a frontier entry: what it is given and
// what came of it.
type attempt struct {
	node  workflow.Node
	cur   current
	input json.RawMessage
	scope Scope
	out   Outcome
	err   error
}

// settles orders results for their commits: completed steps first, then
// failures and waits.
func (a *attempt) settles() int {
	if a.err == nil && a.out.WaitUntil == nil && a.out.WaitFor == "" {
		return 0
	}
	return 1
}

// begin prepares the next attempt of entry: a new one, the same one again
// when it was interrupted, recorded as running first when it has effects
// outside the run. It reports false when the run is not to go on (an
// operator paused or cancelled it).
func (e *Engine) begin(ctx context.Context, c *claimed, entry string, node workflow.Node) (*attempt, bool, error) {
	prev, hasPrev := c.last[entry]
	cur := current{Step: Step{ID: db.NewID(), RunID: c.ID, NodeID: entry, Attempt: 1, IdempotencyKey: effectKey(c.ID, entry)}}
	switch {
	case hasPrev && prev.Status == StepRunning:
		// Interrupted (the process died mid-step): try again as the same
		// attempt.
		cur.Step, cur.recorded = prev, true
	case hasPrev:
		cur.Attempt = prev.Attempt + 1
	}
	cur.redact = node.Redact
	scope, from := c.scopeFor(entry)
	input := json.RawMessage(nonEmpty(scope.Input))
	fromp := &from
	if node.Kind == workflow.NodeMerge {
		input, fromp = mergeInput(c.g, node.ID, scope), nil
		scope.Input = input
	}
	if !cur.recorded {
		cur.Input, cur.inputFrom, cur.StartedAt = input, fromp, e.now()
		if recordsFirst(node) {
			if goOn, err := e.recordStart(ctx, c, &cur); err != nil || !goOn {
				return nil, false, err
			}
		}
	}
	return &attempt{node: node, cur: cur, input: input, scope: scope}, true, nil
}

// run executes an attempt.
func (e *Engine) run(ctx context.Context, st state, a *attempt) {
	began := time.Now()
	a.out, a.err = e.execute(ctx, st, a.node, a.input, a.scope, a.cur.IdempotencyKey, &a.cur.Step)
	e.o.Observer.StepExecuted(a.node.Kind, time.Since(began), a.err != nil)
}

// recordStart writes the attempt's row as running, and the run as running,
// fenced on the lease. It reports whether the run is to go on: an operator
// may have paused or cancelled it.
func (e *Engine) recordStart(ctx context.Context, c *claimed, cur *current) (bool, error) {
	var status string
	err := e.db.InTx(ctx, func(tx db.Querier) error {
		err := tx.QueryRowContext(ctx, `UPDATE runs SET lease_until = $1, status = CASE WHEN status = 'pending' THEN 'running' ELSE status END,
			started_at = COALESCE(started_at, $2), updated_at = $2 WHERE id = $3 AND lease_owner = $4 RETURNING status`,
			cur.StartedAt.Add(e.o.Lease), cur.StartedAt, c.ID, c.token).Scan(&status)
		if errors.Is(err, sql.ErrNoRows) {
			return errLeaseLost
		}
		if err != nil {
			return fmt.Errorf("start step: %w", err)
		}
		if !Status(status).active() {
			return nil
		}
		input, from, key := cur.stored()
		if _, err := tx.ExecContext(ctx, `INSERT INTO run_steps (id, run_id, node_id, attempt, status, input, input_from, idempotency_key, started_at)
			VALUES ($1, $2, $3, $4, 'running', $5, $6, $7, $8)`, cur.ID, c.ID, cur.NodeID, cur.Attempt, input, from, key, cur.StartedAt); err != nil {
			return fmt.Errorf("record step: %w", err)
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	c.Status = Status(status)
	if !c.Status.active() {
		return false, e.park(ctx, c.ID)
	}
	cur.recorded, cur.Status = true, StepRunning
	c.last[cur.NodeID] = cur.Step
	return true, nil
}

// effectKey is the idempotency key of the effect a frontier entry of a run
// makes: the same for every attempt of it (see node.go).
func effectKey(runID, entry string) string { return runID + ":" + entry }

// redactedJSON is what a step marked "Don't store input and output" keeps
// of them.
const redactedJSON = `"[redacted]"`

// storedOutput and storedConsole are what the row keeps of a step's output
// and console.
func (s Step) storedOutput(output string) string {
	if s.redact && output != "" {
		return redactedJSON
	}
	return output
}

func (s Step) storedConsole() string {
	if s.redact {
		return ""
	}
	return s.Console
}

// stepKey reads a step row's idempotency key: stored only where it is not
// effectKey's.
const stepKey = `COALESCE(idempotency_key, run_id || ':' || node_id)`

// stored is what a step's row holds of its input and key: the input only
// where it is not another step's output or the trigger payload (then
// input_from names that), the key only where it is not effectKey's.
func (s Step) stored() (input, from, key sql.NullString) {
	switch {
	case s.redact:
		input = sql.NullString{String: redactedJSON, Valid: true}
	case s.inputFrom != nil:
		from = sql.NullString{String: *s.inputFrom, Valid: true}
	default:
		input = sql.NullString{String: string(nonEmpty(s.Input)), Valid: true}
	}
	if s.IdempotencyKey != effectKey(s.RunID, s.NodeID) {
		key = db.NullString(s.IdempotencyKey)
	}
	return input, from, key
}

func nonEmpty(b json.RawMessage) json.RawMessage {
	if len(b) == 0 {
		return json.RawMessage("null")
	}
	return b
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
	case workflow.NodeAIGenerate:
		exec, ok = e.aiGenerate, true
	case workflow.NodeAIExtract:
		exec, ok = e.aiExtract, true
	case workflow.NodeAction:
		if ok {
			exec = e.withClientConnection(exec) // clientwait.go
		}
	}
	if !ok {
		return Outcome{}, &StepError{Code: "NOT_SUPPORTED", Message: fmt.Sprintf("This TaskJuice cannot run %s steps yet", node.Kind.Label())}
	}
	cfg := node.Config
	if e.eval != nil && len(cfg) > 0 && templated(node.Kind) {
		if cfg, err = e.eval(ctx, cfg, s); err != nil {
			return Outcome{}, err
		}
	}
	var console strings.Builder
	sctx, cancel := context.WithTimeout(ctx, e.o.StepTimeout)
	defer cancel()
	out, err = exec(sctx, Call{Run: st.Run, Node: node, Entry: cur.NodeID, Config: cfg, Input: input, IdempotencyKey: key, Console: &console, Attempt: cur.Attempt, Now: e.now(), Scope: s})
	cur.Console = console.String()
	if err == nil && sctx.Err() != nil && ctx.Err() == nil {
		err = &StepError{Code: "TIMEOUT", Message: fmt.Sprintf("The step took longer than %s", e.o.StepTimeout), Retryable: true}
	}
	return out, err
}

// templated reports whether a kind's settings are evaluated as templates
// before it runs: a Code step's source is code, and reads the run's data
// itself.
func templated(k workflow.Kind) bool { return k != workflow.NodeCode }

// commit records a step's result and moves the run on. A step that
// completed at once, with its run going on or completing, joins the group
// commit (commit.go); every other outcome is written in a transaction of
// its own, as rare as it is varied.
func (e *Engine) commit(ctx context.Context, c *claimed, node workflow.Node, cur current, out Outcome, runErr error) (bool, error) {
	if runErr == nil && out.WaitUntil == nil && out.WaitFor == "" && !cur.recorded {
		// A called run's end wakes its caller: that takes the other path.
		if next, err := c.advanceFrontier(node, cur.NodeID, out); err == nil && (len(next) > 0 || !c.called) {
			return e.commitStep(ctx, c, cur.Step, out, next)
		}
	}
	more, err := e.commitTx(ctx, c, node, cur, out, runErr)
	if err != nil || !more {
		return false, err
	}
	// Read the run back rather than mirror this commit in memory.
	return true, e.reload(ctx, c)
}

// commitTx records a step's result and moves the run on, in one
// transaction.
func (e *Engine) commitTx(ctx context.Context, c *claimed, node workflow.Node, cur current, out Outcome, runErr error) (bool, error) {
	now := e.now()
	more := false
	err := e.db.InTx(ctx, func(tx db.Querier) error {
		// A worker that lost its lease records nothing: the new owner
		// retries the step under the same idempotency key. Extending the
		// lease first also locks the run's row until this commits, so no
		// one can take it over in between.
		var status string
		err := tx.QueryRowContext(ctx, `UPDATE runs SET lease_until = $1, status = CASE WHEN status = 'pending' THEN 'running' ELSE status END,
			started_at = CASE WHEN status = 'pending' THEN COALESCE(started_at, $2) ELSE started_at END
			WHERE id = $3 AND lease_owner = $4 RETURNING status`, now.Add(e.o.Lease), cur.StartedAt, c.ID, c.token).Scan(&status)
		if errors.Is(err, sql.ErrNoRows) {
			return errLeaseLost
		}
		if err != nil {
			return fmt.Errorf("extend lease: %w", err)
		}
		// An operator may have paused or cancelled the run meanwhile: the
		// step's result is still kept, the run stays as they left it.
		active := Status(status).active()
		var reauth *ReauthError
		var capped *SpendCapError
		switch {
		case runErr == nil && (out.WaitUntil != nil || out.WaitFor != ""):
			output, _ := json.Marshal(out.Output)
			if err := putStep(ctx, tx, cur, StepWaiting, string(output), nil, nil); err != nil {
				return err
			}
			if !active {
				return nil
			}
			if waitsInItsArm(node, out) {
				// A Delay, an Approval or a Call Workflow waits in its arm:
				// the run goes on with whatever else can, and waits once
				// every arm waits (waitAll, parallel.go).
				more = true
				return nil
			}
			// An agent's callback or a client's connection holds the whole
			// run.
			_, err := tx.ExecContext(ctx, `UPDATE runs SET status = 'waiting', wait_reason = $1, due_at = NULL, updated_at = $2 WHERE id = $3`,
				out.WaitFor, now, c.ID)
			return err
		case runErr == nil:
			output, err := json.Marshal(out.Output)
			if err != nil {
				return fmt.Errorf("encode output: %w", err)
			}
			if err := putStep(ctx, tx, cur, StepCompleted, string(output), nil, &now); err != nil {
				return err
			}
			next, err := c.advanceFrontier(node, cur.NodeID, out)
			var se *StepError
			if errors.As(err, &se) {
				return e.finishTx(ctx, tx, c.ID, StatusFailed, se, now)
			}
			if err != nil {
				return err
			}
			frontier, _ := json.Marshal(next)
			if _, err := tx.ExecContext(ctx, `UPDATE runs SET frontier = $1, steps_done = steps_done + 1, wait_reason = '', updated_at = $2 WHERE id = $3`,
				string(frontier), now, c.ID); err != nil {
				return err
			}
			if !active {
				return nil
			}
			if status == string(StatusWaiting) {
				if _, err := tx.ExecContext(ctx, `UPDATE runs SET status = 'running' WHERE id = $1`, c.ID); err != nil {
					return err
				}
			}
			more = true
			return nil
		case errors.As(runErr, &reauth):
			se := &StepError{Code: CodeReauthNeeded, Message: "The connection needs to be reconnected; the run is held until then.", Detail: reauth.Reason}
			if err := putStep(ctx, tx, cur, StepPaused, "", se, &now); err != nil {
				return err
			}
			if !active {
				return nil
			}
			if _, err := tx.ExecContext(ctx, `UPDATE runs SET status = 'paused', pause_reason = 'reauth', paused_connection_id = $1, due_at = NULL, updated_at = $2 WHERE id = $3`,
				reauth.ConnectionID, now, c.ID); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO pending_reauths (run_id, connection_id, created_at) VALUES ($1, $2, $3)
				ON CONFLICT (run_id, connection_id) DO UPDATE SET consumed_at = NULL, created_at = excluded.created_at`, c.ID, reauth.ConnectionID, now); err != nil {
				return fmt.Errorf("record pending reauthorization: %w", err)
			}
			return e.event(ctx, tx, c.ID, "held-reauth", "", "connection "+reauth.ConnectionID)
		case errors.As(runErr, &capped):
			// Refused before it was sent: the run waits at this step for the
			// cap to be raised (or the period to roll over) and Resume.
			se := &StepError{Code: "SPEND_CAP_REACHED", Message: capped.Message}
			if err := putStep(ctx, tx, cur, StepPaused, "", se, &now); err != nil {
				return err
			}
			if !active {
				return nil
			}
			if _, err := tx.ExecContext(ctx, `UPDATE runs SET status = 'paused', pause_reason = 'spend-cap', due_at = NULL, updated_at = $1 WHERE id = $2`,
				now, c.ID); err != nil {
				return err
			}
			return e.event(ctx, tx, c.ID, "held-spend-cap", "", "")
		default:
			se := asStepError(runErr)
			if se.Code == "INTERNAL" {
				e.o.Log.Error("step failed", "run", c.ID, "node", node.ID, "err", runErr)
			}
			if err := putStep(ctx, tx, cur, StepFailed, "", se, &now); err != nil {
				return err
			}
			if !active {
				return nil
			}
			if se.Retryable && cur.Attempt < attemptsOf(node) {
				backoff := e.backoffOf(node) << (cur.Attempt - 1)
				if wait := time.Duration(se.RetryAfterSeconds) * time.Second; wait > backoff {
					backoff = min(wait, maxRetryAfter)
				}
				_, err := tx.ExecContext(ctx, `UPDATE runs SET due_at = $1, updated_at = $2 WHERE id = $3`, now.Add(backoff), now, c.ID)
				return err
			}
			return e.finishTx(ctx, tx, c.ID, StatusFailed, se, now)
		}
	})
	return more, err
}

// putStep writes an attempt's outcome: over its row when it was recorded
// before (keeping the output it has when given none), as a new row
// otherwise.
func putStep(ctx context.Context, tx db.Querier, cur current, status StepStatus, output string, se *StepError, finished *time.Time) error {
	var errJSON sql.NullString
	if se != nil {
		b, _ := json.Marshal(se)
		errJSON = sql.NullString{String: string(b), Valid: true}
	}
	var fin sql.NullTime
	if finished != nil {
		fin = sql.NullTime{Time: *finished, Valid: true}
	}
	var err error
	if cur.recorded {
		_, err = tx.ExecContext(ctx, `UPDATE run_steps SET status = $1, output = COALESCE($2, output), error = $3, console = $4,
			finished_at = COALESCE($5, finished_at) WHERE run_id = $6 AND node_id = $7 AND attempt = $8`,
			string(status), db.NullString(cur.storedOutput(output)), errJSON, cur.storedConsole(), fin, cur.RunID, cur.NodeID, cur.Attempt)
	} else {
		input, from, key := cur.stored()
		_, err = tx.ExecContext(ctx, `INSERT INTO run_steps (id, run_id, node_id, attempt, status, input, input_from, output, console, error,
			idempotency_key, started_at, finished_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
			cur.ID, cur.RunID, cur.NodeID, cur.Attempt, string(status), input, from, db.NullString(cur.storedOutput(output)), cur.storedConsole(), errJSON,
			key, cur.StartedAt, fin)
	}
	if err != nil {
		return fmt.Errorf("record step: %w", err)
	}
	return nil
}

// retryPolicy is the step's retry setting: its own, or (for an HTTP
// Request saved before steps had one) its settings'.
func retryPolicy(n workflow.Node) *workflow.RetryPolicy {
	if n.Retry != nil && n.Retry.MaxAttempts > 0 {
		return n.Retry
	}
	if n.Kind == workflow.NodeHTTP {
		if cfg, err := workflow.DecodeConfig(n); err == nil {
			if h := cfg.(*workflow.HTTPConfig); h.Retry != nil && h.Retry.MaxAttempts > 0 {
				return h.Retry
			}
		}
	}
	return nil
}

func attemptsOf(n workflow.Node) int {
	if p := retryPolicy(n); p != nil {
		return p.MaxAttempts
	}
	return defaultAttempts
}

// backoffOf is the wait before a step's first retry; each later one
// doubles it.
func (e *Engine) backoffOf(n workflow.Node) time.Duration {
	if p := retryPolicy(n); p != nil && p.BackoffSeconds > 0 {
		return time.Duration(p.BackoffSeconds * float64(time.Second))
	}
	return e.o.RetryBackoff
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
		if err := e.wakeCaller(ctx, tx, runID, status, now); err != nil {
			return err
		}
		if status == StatusFailed {
			if err := e.noteFailure(ctx, tx, runID, se); err != nil {
				return err
			}
			if err := e.startErrorWorkflow(ctx, tx, runID, se); err != nil {
				return err
			}
			if e.o.Failures != nil {
				code, message := "FAILED", "The run failed"
				if se != nil {
					code, message = se.Code, se.Message
				}
				if err := e.o.Failures.RunFailed(ctx, tx, runID, code, message); err != nil {
					return err
				}
			}
		}
		e.finished(ctx, tx, runID, status)
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
