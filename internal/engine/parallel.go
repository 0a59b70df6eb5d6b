package engine

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"taskjuice/internal/db"
	"taskjuice/internal/workflow"
)

// Parallel and Merge. A Parallel step starts every step its edges lead
// to; the run's frontier then holds one entry per arm. Whatever the arms
// have ready starts at once (up to maxArmsAtOnce steps): their effects run
// side by side, and their results are committed one after the other. A
// Delay in one arm does not hold the others: the arm sleeps while the
// others go on, and the run waits only once every arm waits; so does an
// Approval or a Call Workflow, until its event comes. A step with
// two or more steps leading into it (a Merge, or any join) waits while
// another entry of the frontier can still reach it, so it runs once,
// after every arm that can arrive has arrived. Inside an arm, $input is
// the output of the arm's step before.

// maxArmsAtOnce bounds the steps of one run executed at the same time.
const maxArmsAtOnce = 16

// arm is one arm's output as a Merge sees it.
type arm struct {
	Step string          `json:"step"`
	Data json.RawMessage `json:"data"`
}

func parallelNode(_ context.Context, c Call) (Outcome, error) {
	fmt.Fprintln(c.Console, "starting the arms")
	return Outcome{Output: map[string]any{"started": true}}, nil
}

// awaitsArms reports whether entry is a join that another entry of the
// frontier can still reach.
func (c *claimed) awaitsArms(entry string) bool {
	id := EntryNode(entry)
	if len(c.g.Predecessors(id)) < 2 {
		return false
	}
	for _, other := range c.frontier {
		if o := EntryNode(other); other != entry && o != id && c.g.Reaches(o, id) {
			return true
		}
	}
	return false
}

// sleepsUntil reports when a Delay entry that is waiting ends.
func (c *claimed) sleepsUntil(entry string) (time.Time, bool) {
	s, ok := c.last[entry]
	if !ok || s.Status != StepWaiting {
		return time.Time{}, false
	}
	if node, ok := c.g.Node(EntryNode(entry)); !ok || node.Kind != workflow.NodeDelay {
		return time.Time{}, false
	}
	var out struct {
		WaitedUntil time.Time `json:"waitedUntil"`
	}
	if json.Unmarshal(s.Output, &out) != nil || out.WaitedUntil.IsZero() {
		return time.Time{}, false
	}
	return out.WaitedUntil, true
}

// awaitsEvent reports whether entry waits in its arm for an event: an
// Approval for its decision (Decide marks the step decided with its
// finished_at), a Call Workflow for its called run's end (which hands the
// step the run's status).
func (c *claimed) awaitsEvent(entry string) bool {
	s, ok := c.last[entry]
	return ok && c.stillAwaits(entry, s)
}

// stillAwaits reports whether s, a step of entry, waits for an event.
func (c *claimed) stillAwaits(entry string, s Step) bool {
	if s.Status != StepWaiting {
		return false
	}
	node, ok := c.g.Node(EntryNode(entry))
	if !ok || (node.Kind != workflow.NodeApproval && node.Kind != workflow.NodeCallWorkflow) {
		return false
	}
	// What the event hands the step: a decision, a called run's status.
	var out struct {
		Approved *bool  `json:"approved"`
		Status   Status `json:"status"`
	}
	_ = json.Unmarshal(s.Output, &out)
	switch node.Kind {
	case workflow.NodeApproval:
		return s.FinishedAt == nil && out.Approved == nil
	case workflow.NodeCallWorkflow:
		return out.Status == ""
	}
	return false
}

// waitsInItsArm reports whether a step that waits holds only its arm (a
// Delay, an Approval, a Call Workflow), not the whole run.
func waitsInItsArm(node workflow.Node, out Outcome) bool {
	return out.WaitUntil != nil || node.Kind == workflow.NodeApproval || node.Kind == workflow.NodeCallWorkflow
}

// canGo reports whether a frontier entry can be taken now: it is not a
// join still awaiting arms, a Delay whose time has not come, or a step
// waiting for an event.
func (c *claimed) canGo(entry string, now time.Time) bool {
	if until, ok := c.sleepsUntil(entry); ok && until.After(now) {
		return false
	}
	return !c.awaitsEvent(entry) && !c.awaitsArms(entry)
}

// nextReady moves the entries that cannot be taken now behind those that
// can; it reports false when none can.
func (c *claimed) nextReady(now time.Time) bool {
	for range len(c.frontier) {
		if c.canGo(c.frontier[0], now) {
			return true
		}
		c.frontier = append(c.frontier[1:], c.frontier[0])
	}
	return false
}

// firstWake is when the first sleeping Delay of the frontier ends.
func (c *claimed) firstWake() (time.Time, bool) {
	var first time.Time
	for _, f := range c.frontier {
		if t, ok := c.sleepsUntil(f); ok && (first.IsZero() || t.Before(first)) {
			first = t
		}
	}
	return first, !first.IsZero()
}

// waitAll parks the run when every entry of its frontier waits — for an
// approval's decision, a called run's end, a Delay's end, or arms behind
// them — until the first Delay ends (or the event wakes it). It reports
// true when an event came meanwhile: the run goes on instead (read
// again).
func (e *Engine) waitAll(ctx context.Context, c *claimed) (bool, error) {
	var due sql.NullTime
	if until, ok := c.firstWake(); ok {
		due = sql.NullTime{Time: until.UTC(), Valid: true}
	}
	reason := "delay"
	for _, f := range c.frontier {
		if !c.awaitsEvent(f) {
			continue
		}
		if node, _ := c.g.Node(EntryNode(f)); node.Kind == workflow.NodeApproval {
			reason = "approval" // a person is to act: said first
		} else if reason == "delay" {
			reason = "workflow"
		}
	}
	decided := false
	err := e.db.InTx(ctx, func(tx db.Querier) error {
		// The run's row first, as Decide takes it: a decision is either
		// seen here or wakes the run after this.
		res, err := tx.ExecContext(ctx, `UPDATE runs SET updated_at = $1 WHERE id = $2 AND lease_owner = $3`, e.now(), c.ID, c.token)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err == nil && n == 0 {
			return errLeaseLost
		}
		if decided, err = e.answered(ctx, tx, c); err != nil || decided {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE runs SET status = 'waiting', wait_reason = $1, due_at = $2, updated_at = $3
			WHERE id = $4 AND status IN ('pending', 'running', 'waiting')`, reason, due, e.now(), c.ID)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("wait for the arms: %w", err)
	}
	return decided, nil
}

// armsReady are the frontier's entries that start together now, the head
// first: fresh steps that finish on their own, while arms are under way.
// Waits for an event, agents' turns, retries and interrupted steps are
// taken one at a time.
func (c *claimed) armsReady(now time.Time) []string {
	if len(c.frontier) < 2 || !c.startsAlongside(c.frontier[0], now) {
		return nil
	}
	out := []string{c.frontier[0]}
	for _, f := range c.frontier[1:] {
		if len(out) < maxArmsAtOnce && c.startsAlongside(f, now) {
			out = append(out, f)
		}
	}
	return out
}

func (c *claimed) startsAlongside(entry string, now time.Time) bool {
	if _, seen := c.last[entry]; seen || !c.canGo(entry, now) {
		return false
	}
	node, ok := c.g.Node(EntryNode(entry))
	if !ok {
		return false
	}
	switch node.Kind {
	case workflow.NodeAgent, workflow.NodeApproval, workflow.NodeCallWorkflow:
		return false
	case workflow.NodeAction:
		return node.Connection == nil || !node.Connection.ClientProvides || node.Connection.ID != ""
	}
	return true
}

// stepArms runs entries at the same time and commits their results in
// turn: those that completed first, so that the run moves on before a
// failure or a wait stops it. It reports whether the run can go on.
func (e *Engine) stepArms(ctx context.Context, c *claimed, entries []string) (bool, error) {
	var atts []*attempt
	for _, entry := range entries {
		node, _ := c.g.Node(EntryNode(entry))
		a, goOn, err := e.begin(ctx, c, entry, node)
		if err != nil || !goOn {
			// Paused or cancelled meanwhile: a step recorded as running
			// is run again, as the same attempt, when the run goes on.
			return false, err
		}
		atts = append(atts, a)
	}
	var wg sync.WaitGroup
	st := c.state
	for _, a := range atts {
		wg.Go(func() { e.run(ctx, st, a) })
	}
	wg.Wait()
	slices.SortStableFunc(atts, func(a, b *attempt) int {
		return cmp.Compare(a.settles(), b.settles())
	})
	more := true
	for _, a := range atts {
		m, err := e.commit(ctx, c, a.node, a.cur, a.out, a.err)
		if err != nil {
			return false, err
		}
		more = more && m
	}
	return more, nil
}

// mergeInput is what a Merge step is given: the output of each step
// leading into it that ran, in the order of its edges.
func mergeInput(g *workflow.Graph, id string, s Scope) json.RawMessage {
	arms := []arm{}
	for _, p := range g.Predecessors(id) {
		if st, ok := s.Steps[p]; ok {
			arms = append(arms, arm{Step: p, Data: nonEmpty(st.Data)})
		}
	}
	b, _ := json.Marshal(arms)
	return b
}

// armItems reads an arm's items: its output when a list, its "items"
// when it has them, else the output as one item.
func armItems(raw json.RawMessage) []any {
	var v any
	if err := json.Unmarshal(nonEmpty(raw), &v); err != nil {
		return nil
	}
	switch x := v.(type) {
	case []any:
		return x
	case map[string]any:
		if items, ok := x["items"].([]any); ok {
			return items
		}
	case nil:
		return nil
	}
	return []any{v}
}

func mergeNode(_ context.Context, c Call) (Outcome, error) {
	cfg, err := decode[workflow.MergeConfig](c)
	if err != nil {
		return Outcome{}, err
	}
	var arms []arm
	if err := json.Unmarshal(nonEmpty(c.Input), &arms); err != nil {
		return Outcome{}, &StepError{Code: "MERGE_INPUT", Message: "The arms' outputs could not be read"}
	}
	lists := make([][]any, len(arms))
	byStep := map[string]json.RawMessage{}
	for i, a := range arms {
		lists[i] = armItems(a.Data)
		byStep[a.Step] = a.Data
	}
	var items []any
	switch cfg.Mode {
	case "", "append":
		for _, l := range lists {
			items = append(items, l...)
		}
	case "position":
		items = mergeByPosition(lists)
	case "key":
		if items, err = mergeByKey(lists, strings.TrimSpace(cfg.Key)); err != nil {
			return Outcome{}, err
		}
	default:
		return Outcome{}, &StepError{Code: "CONFIG_INVALID", Message: "Merge by append, position or key"}
	}
	if items == nil {
		items = []any{}
	}
	fmt.Fprintf(c.Console, "%d arms, %d items\n", len(arms), len(items))
	return Outcome{Output: map[string]any{"items": items, "count": len(items), "arms": byStep}}, nil
}

// mergeByPosition merges the arms' i-th items into one (objects' fields
// together; a later arm's field wins; an item that is not an object is
// kept under the arm's index).
func mergeByPosition(lists [][]any) []any {
	n := 0
	for _, l := range lists {
		n = max(n, len(l))
	}
	out := make([]any, n)
	for i := range n {
		m := map[string]any{}
		for a, l := range lists {
			if i >= len(l) {
				continue
			}
			if obj, ok := l[i].(map[string]any); ok {
				for k, v := range obj {
					m[k] = v
				}
			} else {
				m[fmt.Sprint(a)] = l[i]
			}
		}
		out[i] = m
	}
	return out
}

// mergeByKey merges the objects that share the value of key, in the
// order each value was first seen; an item without it is an error.
func mergeByKey(lists [][]any, key string) ([]any, error) {
	var order []string
	merged := map[string]map[string]any{}
	for a, l := range lists {
		for i, it := range l {
			obj, ok := it.(map[string]any)
			if !ok || obj[key] == nil {
				return nil, &StepError{Code: "MERGE_KEY_MISSING", Message: fmt.Sprintf("Item %d of arm %d has no %q to merge on", i, a+1, key)}
			}
			k, _ := json.Marshal(obj[key])
			m, seen := merged[string(k)]
			if !seen {
				m = map[string]any{}
				merged[string(k)] = m
				order = append(order, string(k))
			}
			for f, v := range obj {
				m[f] = v
			}
		}
	}
	out := make([]any, len(order))
	for i, k := range order {
		out[i] = merged[k]
	}
	return out, nil
}

// anyWaits reports whether an entry of the frontier is a Delay, an
// Approval or a Call Workflow that waits.
func (c *claimed) anyWaits() bool {
	for _, f := range c.frontier {
		if _, ok := c.sleepsUntil(f); ok || c.awaitsEvent(f) {
			return true
		}
	}
	return false
}

// answered reports, under the run's row lock, whether an event an entry
// waited for has come since the worker read the run: a waiting step whose
// event is recorded (a decision, a called run's end).
func (e *Engine) answered(ctx context.Context, tx db.Querier, c *claimed) (bool, error) {
	rows, err := tx.QueryContext(ctx, `SELECT node_id, COALESCE(output, ''), finished_at FROM run_steps WHERE run_id = $1 AND status = 'waiting'`, c.ID)
	if err != nil {
		return false, err
	}
	defer rows.Close()
	now := map[string]Step{}
	for rows.Next() {
		var s Step
		var output string
		var finished sql.NullTime
		if err := rows.Scan(&s.NodeID, &output, &finished); err != nil {
			return false, err
		}
		s.Status, s.Output, s.FinishedAt = StepWaiting, json.RawMessage(output), timePtr(finished)
		now[s.NodeID] = s
	}
	if err := rows.Err(); err != nil {
		return false, err
	}
	for _, f := range c.frontier {
		// What the worker holds waits; what is recorded now may not.
		if s, ok := now[f]; ok && c.awaitsEvent(f) && !c.stillAwaits(f, s) {
			return true, nil
		}
	}
	return false, nil
}
