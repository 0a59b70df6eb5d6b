package engine

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
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

// One commit is under way at a time, on either database. SQLite has one
// writer. On PostgreSQL, letting two to four commits run at once measured
// slower on two cores (ten-step benchmark, 32 in flight: 9,254 steps/s
// with one, 8,768 with two, 7,883 with three, 6,828 with four): smaller
// batches cost more statements and flushes than the overlap saves.

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

	// Set by the commit.
	status Status    // the run's status after it; "" when the lease was lost
	at     time.Time // when it was committed
	err    error
	// wake is told false when the write is committed (or failed), true
	// when its worker is to lead the next commit.
	wake chan bool
}

// stmtCache holds the statements prepared on the write pool.
type stmtCache struct {
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

type committer struct {
	mu    sync.Mutex
	queue []*stepWrite
	// leaders is how many commits are under way.
	leaders int
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
	w := &stepWrite{run: c.ID, token: c.token, step: s, frontier: string(frontier), last: len(next) == 0, wake: make(chan bool, 1)}
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
	if w.last && c.Status == StatusCompleted {
		e.o.Observer.RunFinished(c.WorkspaceID, StatusCompleted)
	}
	return c.Status == StatusRunning, nil
}

// groupCommit returns once w is committed. While no commit is under way,
// the caller leads one itself: it commits
// its own write and every write queued by then. Otherwise it queues w and
// waits, either for a commit to take w along or for a leader to hand it
// the lead. Each queued write is taken off the queue once, by the one
// that will answer it, so it is told exactly once.
func (e *Engine) groupCommit(ctx context.Context, w *stepWrite) {
	c := &e.commits
	c.mu.Lock()
	if c.leaders >= 1 {
		c.queue = append(c.queue, w)
		c.mu.Unlock()
		if lead := <-w.wake; !lead {
			return
		}
		c.mu.Lock() // the lead was handed over: c.leaders counts it still
	} else {
		c.leaders++
	}
	// One write per run in a batch: two would be two workers of this
	// process on one run, one of them past its lease, and the statements
	// tell runs, not workers, apart. The other waits for the next batch.
	batch, rest := []*stepWrite{w}, c.queue[:0:0]
	seen := map[string]bool{w.run: true}
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
		next := c.queue[0]
		c.queue = c.queue[1:]
		next.wake <- true // it leads the next commit
	} else {
		c.leaders--
	}
	c.mu.Unlock()
	for _, o := range batch[1:] {
		o.wake <- false
	}
}

// writeSteps commits a batch. Should that fail, each write is tried
// alone, so that one bad write fails only its own run.
func (e *Engine) writeSteps(ctx context.Context, batch []*stepWrite) {
	now := e.now()
	var moved map[string]Status
	var err error
	if e.db.Dialect() == db.Postgres {
		moved, err = e.writeStepsPostgres(ctx, batch, now)
	} else {
		var stmts [3]*sql.Stmt
		for i, q := range []string{sqliteMoveOn, sqliteComplete, sqliteRecordStep} {
			if stmts[i], err = e.prepare(ctx, q); err != nil {
				break
			}
		}
		if err == nil {
			err = e.db.InTx(ctx, func(tx db.Querier) error {
				moved, err = e.writeStepsSQLite(ctx, tx, batch, now, stmts)
				return err
			})
		}
	}
	if err != nil && len(batch) > 1 {
		for _, w := range batch {
			e.writeSteps(ctx, []*stepWrite{w})
		}
		return
	}
	for _, w := range batch {
		w.status, w.at, w.err = moved[w.run], now, err
	}
}

// moveRuns (PostgreSQL) moves each run of the batch (v) on: the new frontier, one more
// step done, the run marked running (as of its first step's start), and
// the lease extended; or, after its last step, the run completed and its
// lease given up. A run an operator paused or cancelled meanwhile keeps its
// status; the step's result is kept all the same. $1 is the commit's time,
// $2 the new lease's end, given only to a lease with less than half its
// length left ($16): the worker's keepLease extends it meanwhile, and a
// middle step that leaves lease_until alone changes no column any index of
// runs reads, so PostgreSQL rewrites the row in place (a heap-only update)
// rather than adding an entry to each of the table's indexes.
const moveRuns = `frontier = v.frontier, steps_done = steps_done + 1, wait_reason = '', updated_at = $1,
	status = CASE WHEN status NOT IN ('pending', 'running', 'waiting') THEN status WHEN v.last THEN 'completed' ELSE 'running' END,
	started_at = CASE WHEN status = 'pending' THEN COALESCE(started_at, v.started) ELSE started_at END,
	finished_at = CASE WHEN status IN ('pending', 'running', 'waiting') AND v.last THEN $1 ELSE finished_at END,
	due_at = CASE WHEN status IN ('pending', 'running', 'waiting') AND v.last THEN NULL ELSE due_at END,
	lease_owner = CASE WHEN v.last THEN '' ELSE lease_owner END,
	lease_until = CASE WHEN v.last THEN NULL WHEN lease_until IS NULL OR lease_until < $16::timestamptz THEN $2::timestamptz ELSE lease_until END`

// The lease check (lease_owner = v.token) is part of the update, which
// locks each row it changes until the commit: no one takes a run over in
// between, and a run whose lease was lost is neither moved on nor gets its
// step recorded.

// The SQLite statements, one row each: SQLite runs in this process, so a
// statement costs no round trip, but parsing it costs more than running
// it; each is prepared once (see prepare) and run once per write. They
// move a run on as moveRuns does, the run's last step apart from the
// others, so that the others leave the runs_due index alone.
const (
	sqliteMoveOn = `UPDATE runs SET frontier = $1, steps_done = steps_done + 1, wait_reason = '', updated_at = $2, lease_until = $3,
		status = CASE WHEN status IN ('pending', 'waiting') THEN 'running' ELSE status END,
		started_at = CASE WHEN status = 'pending' THEN COALESCE(started_at, $4) ELSE started_at END
		WHERE id = $5 AND lease_owner = $6 RETURNING status`
	sqliteComplete = `UPDATE runs SET frontier = $1, steps_done = steps_done + 1, wait_reason = '', updated_at = $2,
		status = CASE WHEN status IN ('pending', 'running', 'waiting') THEN 'completed' ELSE status END,
		started_at = CASE WHEN status = 'pending' THEN COALESCE(started_at, $3) ELSE started_at END,
		finished_at = CASE WHEN status IN ('pending', 'running', 'waiting') THEN $2 ELSE finished_at END,
		due_at = CASE WHEN status IN ('pending', 'running', 'waiting') THEN NULL ELSE due_at END,
		lease_owner = '', lease_until = NULL
		WHERE id = $4 AND lease_owner = $5 RETURNING status`
	sqliteRecordStep = `INSERT INTO run_steps (id, run_id, node_id, attempt, status, input, input_from, output, console, idempotency_key, started_at, finished_at)
		VALUES ($1, $2, $3, $4, 'completed', $5, $6, $7, $8, $9, $10, $11)`
)

// writeStepsSQLite writes a batch inside the transaction, two statements
// per write.
func (e *Engine) writeStepsSQLite(ctx context.Context, tx db.Querier, batch []*stepWrite, now time.Time, stmts [3]*sql.Stmt) (map[string]Status, error) {
	moveOn, complete, record := inTx(ctx, tx, stmts[0]), inTx(ctx, tx, stmts[1]), inTx(ctx, tx, stmts[2])
	moved := make(map[string]Status, len(batch))
	for _, w := range batch {
		var row *sql.Row
		if w.last {
			row = complete.QueryRowContext(ctx, sqliteComplete, w.frontier, now, w.step.StartedAt, w.run, w.token)
		} else {
			row = moveOn.QueryRowContext(ctx, sqliteMoveOn, w.frontier, now, now.Add(e.o.Lease), w.step.StartedAt, w.run, w.token)
		}
		var status string
		if err := row.Scan(&status); errors.Is(err, sql.ErrNoRows) {
			continue // the lease was lost
		} else if err != nil {
			return nil, fmt.Errorf("move run on: %w", err)
		}
		s := w.step
		input, from, key := s.stored()
		if _, err := record.ExecContext(ctx, sqliteRecordStep, s.ID, w.run, s.NodeID, s.Attempt, input, from, s.storedOutput(string(s.Output)), s.storedConsole(),
			key, s.StartedAt, now); err != nil {
			return nil, fmt.Errorf("record step: %w", err)
		}
		moved[w.run] = Status(status)
	}
	return moved, nil
}

// writeStepsPostgres writes a batch with one statement, atomic on its own,
// so that a batch costs one round trip; its text is the same whatever the
// batch's size (the writes travel as arrays), so PostgreSQL plans it once
// per connection.
func (e *Engine) writeStepsPostgres(ctx context.Context, batch []*stepWrite, now time.Time) (map[string]Status, error) {
	n := len(batch)
	var (
		runs, tokens, frontiers       = make([]string, n), make([]string, n), make([]string, n)
		last                          = make([]bool, n)
		started                       = make([]time.Time, n)
		ids, nodes, outputs, consoles = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		inputs, froms, keys           = make([]sql.NullString, n), make([]sql.NullString, n), make([]sql.NullString, n)
		attempts                      = make([]int32, n)
	)
	for i, w := range batch {
		s := w.step
		runs[i], tokens[i], frontiers[i], last[i], started[i] = w.run, w.token, w.frontier, w.last, s.StartedAt
		ids[i], nodes[i], attempts[i], outputs[i], consoles[i] = s.ID, s.NodeID, int32(s.Attempt), s.storedOutput(string(s.Output)), s.storedConsole()
		inputs[i], froms[i], keys[i] = s.stored()
	}
	return scanMoved(e.db.Write().QueryContext(ctx, `WITH v AS (
			SELECT * FROM unnest($3::text[], $4::text[], $5::text[], $6::boolean[], $7::timestamptz[],
				$8::text[], $9::text[], $10::integer[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[])
				AS v (run_id, token, frontier, last, started, step_id, node_id, attempt, input, input_from, output, console, idempotency_key)
		), moved AS (
			UPDATE runs SET `+moveRuns+` FROM v WHERE runs.id = v.run_id AND runs.lease_owner = v.token RETURNING runs.id, runs.status
		), recorded AS (
			INSERT INTO run_steps (id, run_id, node_id, attempt, status, input, input_from, output, console, idempotency_key, started_at, finished_at)
			SELECT v.step_id, v.run_id, v.node_id, v.attempt, 'completed', v.input, v.input_from, v.output, v.console, v.idempotency_key, v.started, $1
			FROM v JOIN moved ON moved.id = v.run_id
		)
		SELECT id, status FROM moved`,
		now, now.Add(e.o.Lease), runs, tokens, frontiers, last, started, ids, nodes, attempts, inputs, froms, outputs, consoles, keys, now.Add(e.o.Lease/2)))
}

// scanMoved reads the runs a batch moved on, and their status after it.
func scanMoved(rows *sql.Rows, err error) (map[string]Status, error) {
	if err != nil {
		return nil, fmt.Errorf("move runs on: %w", err)
	}
	defer rows.Close()
	moved := map[string]Status{}
	for rows.Next() {
		var id, status string
		if err := rows.Scan(&id, &status); err != nil {
			return nil, fmt.Errorf("move runs on: %w", err)
		}
		moved[id] = Status(status)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("move runs on: %w", err)
	}
	return moved, nil
}

// prepare returns query prepared on the write pool, the first time it is
// asked for and from the cache after (database/sql keeps it prepared on
// the pool's connection), or nil where the pool cannot prepare. It must be
// called outside a transaction: on SQLite the transaction would hold the
// one connection the pool prepares on.
func (e *Engine) prepare(ctx context.Context, query string) (*sql.Stmt, error) {
	pool, ok := e.db.Write().(interface {
		PrepareContext(ctx context.Context, query string) (*sql.Stmt, error)
	})
	if !ok {
		return nil, nil
	}
	e.stmts.mu.Lock()
	defer e.stmts.mu.Unlock()
	if st, ok := e.stmts.m[query]; ok {
		return st, nil
	}
	st, err := pool.PrepareContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	if e.stmts.m == nil {
		e.stmts.m = map[string]*sql.Stmt{}
	}
	e.stmts.m[query] = st
	return st, nil
}

// writer runs query on its own, prepared once on SQLite (see prepare);
// PostgreSQL's driver keeps its statements prepared by itself.
func (e *Engine) writer(ctx context.Context, query string) (db.Querier, error) {
	if e.db.Dialect() != db.SQLite {
		return e.db.Write(), nil
	}
	st, err := e.prepare(ctx, query)
	if err != nil || st == nil {
		return e.db.Write(), err
	}
	return stmtQuerier{st}, nil
}

// inTx is st ready to run in tx, or tx itself (which parses the query each
// time) when st is nil or tx cannot take it.
func inTx(ctx context.Context, tx db.Querier, st *sql.Stmt) db.Querier {
	t, ok := tx.(interface {
		StmtContext(ctx context.Context, stmt *sql.Stmt) *sql.Stmt
	})
	if st == nil || !ok {
		return tx
	}
	return stmtQuerier{t.StmtContext(ctx, st)}
}

// stmtQuerier runs a prepared statement as a Querier; the query text
// given is the statement's own, and ignored.
type stmtQuerier struct{ st *sql.Stmt }

func (q stmtQuerier) ExecContext(ctx context.Context, _ string, args ...any) (sql.Result, error) {
	return q.st.ExecContext(ctx, args...)
}

func (q stmtQuerier) QueryContext(ctx context.Context, _ string, args ...any) (*sql.Rows, error) {
	return q.st.QueryContext(ctx, args...)
}

func (q stmtQuerier) QueryRowContext(ctx context.Context, _ string, args ...any) *sql.Row {
	return q.st.QueryRowContext(ctx, args...)
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
