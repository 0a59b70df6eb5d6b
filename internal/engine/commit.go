package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"taskjuice/internal/db"
	"taskjuice/internal/workflow"
)

// Group commit. Most steps finish at once (a Transform, a Branch) and the
// run goes straight on, so what bounds a worker is the commit of each
// step. Workers of different runs hand those commits to one transaction:
// the first to arrive commits everything queued by then, its own write
// included, while the others wait; whoever arrived during that commit is
// in the next one. Each worker still waits for its step to be committed
// before its run's next step starts, so a committed step is never lost and
// a step never starts on an uncommitted predecessor. On SQLite (one
// writer) this turns many small transactions into few; on PostgreSQL it
// shares each fsync among many steps.

// maxBatch bounds the steps committed in one transaction.
const maxBatch = 256

// stepWrite is one step that completed at once, for the group commit: its
// row, written completed, and its run moved on (or completed) in the same
// transaction, fenced on the worker's lease.
type stepWrite struct {
	run, token string
	step       Step
	// frontier is the run's next frontier (JSON); last says it is empty,
	// so the run completes and its lease is given up.
	frontier string
	last     bool
	// start marks a pending run running, as of the step's start.
	start bool

	// Set by the commit.
	status Status    // the run's status after it; "" when the lease was lost
	at     time.Time // when it was committed
	err    error
	// wake is told false when the write is committed (or failed), true
	// when its worker is to lead the next commit.
	wake chan bool
}

type committer struct {
	mu      sync.Mutex
	queue   []*stepWrite
	leading bool
}

// commitStep commits a step that completed at once through the group
// commit and mirrors it in memory. It reports whether the run goes on.
func (e *Engine) commitStep(ctx context.Context, c *claimed, s Step, out Outcome, next []string) (bool, error) {
	output, err := json.Marshal(out.Output)
	if err != nil {
		return false, fmt.Errorf("encode output: %w", err)
	}
	frontier, err := json.Marshal(next)
	if err != nil {
		return false, fmt.Errorf("encode frontier: %w", err)
	}
	s.Output = output
	w := &stepWrite{run: c.ID, token: c.token, step: s, frontier: string(frontier), last: len(next) == 0,
		start: c.Status == StatusPending, wake: make(chan bool, 1)}
	e.groupCommit(ctx, w)
	if w.err != nil {
		return false, w.err
	}
	if w.status == "" {
		return false, errLeaseLost
	}
	s.Status, s.FinishedAt = StepCompleted, &w.at
	c.last[s.NodeID] = s
	c.see(s)
	c.frontier, c.Status = next, w.status
	c.StepsDone++
	// The commit that completes a run also gives its lease up.
	c.released = w.last
	return c.Status == StatusRunning, nil
}

// groupCommit queues w and returns once it is committed, leading the
// commit itself when no other worker is.
func (e *Engine) groupCommit(ctx context.Context, w *stepWrite) {
	c := &e.commits
	c.mu.Lock()
	c.queue = append(c.queue, w)
	if c.leading {
		c.mu.Unlock()
		if lead := <-w.wake; !lead {
			return
		}
		c.mu.Lock()
	}
	c.leading = true
	// One write per run in a batch: two would be two workers of this
	// process on one run, one of them past its lease, and the statements
	// tell runs, not workers, apart. The other waits for the next batch.
	var batch, rest []*stepWrite
	seen := make(map[string]bool, len(c.queue))
	for _, o := range c.queue {
		if len(batch) < maxBatch && !seen[o.run] {
			seen[o.run] = true
			batch = append(batch, o)
		} else {
			rest = append(rest, o)
		}
	}
	c.queue = rest
	c.mu.Unlock()

	// The batch is written to the end even when this worker's own context
	// ends: the others are waiting for it.
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	e.writeSteps(bctx, batch)
	cancel()

	c.mu.Lock()
	if len(c.queue) > 0 {
		c.queue[0].wake <- true // its worker leads the next commit
	} else {
		c.leading = false
	}
	c.mu.Unlock()
	for _, o := range batch {
		if o != w {
			o.wake <- false
		}
	}
}

// writeSteps commits a batch in one transaction. Should it fail, each
// write is tried alone, so that one bad write fails only its own run.
func (e *Engine) writeSteps(ctx context.Context, batch []*stepWrite) {
	now := e.now()
	results := map[string]Status{}
	err := e.db.InTx(ctx, func(tx db.Querier) error {
		var err error
		results, err = e.writeStepsTx(ctx, tx, batch, now)
		return err
	})
	if err != nil && len(batch) > 1 {
		for _, w := range batch {
			e.writeSteps(ctx, []*stepWrite{w})
		}
		return
	}
	for _, w := range batch {
		w.status, w.at, w.err = results[w.run], now, err
	}
}

// writeStepsTx moves the batch's runs on with one statement and records
// their steps with another, whatever the batch's size. It returns the
// status of each run it moved on; a run missing there lost its lease, and
// its step is not recorded.
func (e *Engine) writeStepsTx(ctx context.Context, tx db.Querier, batch []*stepWrite, now time.Time) (map[string]Status, error) {
	// A run's first step marks it running, as of that step's start.
	for _, w := range batch {
		if !w.start {
			continue
		}
		if _, err := tx.ExecContext(ctx, `UPDATE runs SET status = 'running', started_at = COALESCE(started_at, $1)
			WHERE id = $2 AND status = 'pending' AND lease_owner = $3`, w.step.StartedAt, w.run, w.token); err != nil {
			return nil, fmt.Errorf("start run: %w", err)
		}
	}
	// The runs: the new frontier, one more step done, and the lease
	// extended, or, after the last step, the run completed and the lease
	// given up. A run an operator paused or cancelled meanwhile keeps its
	// status (the step's result is kept all the same). The lease check
	// locks each row until the commit, so no one takes a run over in
	// between. (COALESCE tells PostgreSQL the type of $2, which a bare
	// parameter in a CASE does not.)
	var b strings.Builder
	args := []any{now, now.Add(e.o.Lease)}
	b.WriteString(`UPDATE runs SET frontier = v.column3, steps_done = steps_done + 1, wait_reason = '', updated_at = $1,
		status = CASE WHEN status NOT IN ('pending', 'running', 'waiting') THEN status WHEN v.column4 = 'last' THEN 'completed' ELSE 'running' END,
		finished_at = CASE WHEN status IN ('pending', 'running', 'waiting') AND v.column4 = 'last' THEN $1 ELSE finished_at END,
		due_at = CASE WHEN status IN ('pending', 'running', 'waiting') AND v.column4 = 'last' THEN NULL ELSE due_at END,
		lease_owner = CASE WHEN v.column4 = 'last' THEN '' ELSE lease_owner END,
		lease_until = CASE WHEN v.column4 = 'last' THEN NULL ELSE COALESCE($2, lease_until) END
		FROM (VALUES `)
	for i, w := range batch {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(" + placeholders(len(args), 4) + ")")
		more := "more"
		if w.last {
			more = "last"
		}
		args = append(args, w.run, w.token, w.frontier, more)
	}
	b.WriteString(`) AS v WHERE runs.id = v.column1 AND runs.lease_owner = v.column2 RETURNING id, status`)
	rows, err := tx.QueryContext(ctx, b.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("move runs on: %w", err)
	}
	moved := map[string]Status{}
	for rows.Next() {
		var id, status string
		if err := rows.Scan(&id, &status); err != nil {
			rows.Close()
			return nil, fmt.Errorf("move runs on: %w", err)
		}
		moved[id] = Status(status)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("move runs on: %w", err)
	}
	if len(moved) == 0 {
		return moved, nil
	}
	// The steps of the runs that were moved on, completed.
	b.Reset()
	args = []any{now}
	b.WriteString(`INSERT INTO run_steps (id, run_id, node_id, attempt, status, input, output, console, idempotency_key, started_at, finished_at) VALUES `)
	first := true
	for _, w := range batch {
		if _, ok := moved[w.run]; !ok {
			continue
		}
		if !first {
			b.WriteString(", ")
		}
		first = false
		s := w.step
		b.WriteString("(" + placeholders(len(args), 4) + ", 'completed', " + placeholders(len(args)+4, 5) + ", $1)")
		args = append(args, s.ID, w.run, s.NodeID, s.Attempt, string(nonEmpty(s.Input)), string(s.Output), s.Console, s.IdempotencyKey, s.StartedAt)
	}
	if _, err := tx.ExecContext(ctx, b.String(), args...); err != nil {
		return nil, fmt.Errorf("record steps: %w", err)
	}
	return moved, nil
}

// placeholders lists n placeholders after the first `after`: "$3, $4".
func placeholders(after, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("$" + strconv.Itoa(after+i+1))
	}
	return b.String()
}

// graphCache keeps the graphs of the versions runs execute: a run executes
// a published version, and a published version's graph never changes.
type graphCache struct {
	mu sync.Mutex
	m  map[string]*workflow.Graph
}

// maxGraphs bounds the cache; past it, it starts over.
const maxGraphs = 1024

func (e *Engine) graph(ctx context.Context, versionID string) (*workflow.Graph, error) {
	c := &e.graphs
	c.mu.Lock()
	g, ok := c.m[versionID]
	c.mu.Unlock()
	if ok {
		return g, nil
	}
	graph, err := e.workflows.GraphOf(ctx, versionID)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxGraphs {
		c.m = map[string]*workflow.Graph{}
	}
	c.m[versionID] = &graph
	c.mu.Unlock()
	return &graph, nil
}
