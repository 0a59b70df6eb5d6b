package engine

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"taskjuice/internal/db"
)

// Group commit of new runs. Webhooks, the API and app triggers start runs
// from many requests at once, and each used to commit (and fsync) alone.
// StartRun now queues its run; the first caller to find no commit under
// way records everything queued by then, its own run included, in one
// transaction, while the others wait; whoever arrived during that commit
// is in the next one. Every caller is answered only once its run is
// committed. The same dedup key twice in one batch, or a key recorded
// before, answers with the run already there. Should the batch's
// transaction fail, each run is tried in a transaction of its own, so
// that one bad row fails only its own caller.

// runStart is one run to record: its row, and, once the commit is done,
// the answer.
type runStart struct {
	id, workspaceID, workflowID, versionID string
	kind                                   RunKind
	source, payload, dedupKey, frontier    string
	o                                      origin
	at                                     time.Time

	// Set by the commit: the run's id (the existing run's, for a dedup
	// key recorded before), whether this start inserted it, or an error.
	got      string
	inserted bool
	err      error
	// wake is told false when the start is committed (or failed), true
	// when its caller is to lead the next commit.
	wake chan bool
}

func (r *runStart) args() []any {
	return []any{r.id, r.workspaceID, r.workflowID, r.versionID, r.kind, r.source, r.payload, db.NullString(r.dedupKey),
		db.NullString(r.o.replayOf), r.o.depth, db.NullString(r.o.parentRun), db.NullString(r.o.parentNode), r.frontier, r.at}
}

type starter struct {
	mu      sync.Mutex
	queue   []*runStart
	leading bool
	// fault, set by tests, fails the write of a run inside a batch.
	fault func(r *runStart) error
}

// insertRunOrKeep records a run unless its dedup key is taken; then the
// transaction goes on (a unique violation would end it on PostgreSQL).
const insertRunOrKeep = insertRunSQL + ` ON CONFLICT DO NOTHING`

// groupStart records r through the group commit and returns its run's id.
func (e *Engine) groupStart(ctx context.Context, r *runStart) (string, error) {
	r.wake = make(chan bool, 1)
	c := &e.starts
	c.mu.Lock()
	c.queue = append(c.queue, r)
	if c.leading {
		c.mu.Unlock()
		// Waits even when ctx ends: the leader may hand this caller the
		// next commit, and the batch ends within its own timeout.
		if lead := <-r.wake; !lead {
			return r.got, r.err
		}
		c.mu.Lock()
	}
	c.leading = true
	n := min(len(c.queue), maxBatch)
	batch := c.queue[:n:n]
	c.queue = append([]*runStart(nil), c.queue[n:]...)
	c.mu.Unlock()

	// The batch is written to the end even when this caller's context
	// ends: the others are waiting for it.
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	e.writeStarts(bctx, batch)
	cancel()

	c.mu.Lock()
	if len(c.queue) > 0 {
		c.queue[0].wake <- true // its caller leads the next commit
	} else {
		c.leading = false
	}
	c.mu.Unlock()
	for _, o := range batch {
		if o != r {
			o.wake <- false
		}
	}
	// Once for the batch, and after the next commit is under way: the
	// runs are committed, the workers may take them up.
	if r.inserted {
		e.o.Observer.RunStarted(r.workspaceID)
	}
	for _, o := range batch {
		if o.inserted {
			e.notify(ctx)
			break
		}
	}
	return r.got, r.err
}

// writeStarts commits a batch. Should that fail, each start is tried
// alone, so that one bad row fails only its own caller.
func (e *Engine) writeStarts(ctx context.Context, batch []*runStart) {
	var insert, existing *sql.Stmt
	var err error
	if e.db.Dialect() == db.Postgres {
		err = e.writeStartsPostgres(ctx, batch)
	} else {
		if insert, err = e.prepare(ctx, insertRunOrKeep); err == nil {
			existing, err = e.prepare(ctx, selectDedupRun)
		}
		if err == nil {
			err = e.writeStartsSQLite(ctx, batch, insert, existing)
		}
	}
	if err != nil && len(batch) > 1 {
		for _, r := range batch {
			e.writeStarts(ctx, []*runStart{r})
		}
		return
	}
	for _, r := range batch {
		if err != nil {
			r.got, r.inserted, r.err = "", false, err
		}
	}
}

// writeStartsSQLite records a batch in one transaction, a prepared
// statement per run: SQLite runs in this process, so a statement costs no
// round trip.
func (e *Engine) writeStartsSQLite(ctx context.Context, batch []*runStart, insert, existing *sql.Stmt) error {
	return e.db.InTx(ctx, func(tx db.Querier) error {
		ins, sel := inTx(ctx, tx, insert), inTx(ctx, tx, existing)
		for _, r := range batch {
			r.got, r.inserted = "", false
			if e.starts.fault != nil {
				if err := e.starts.fault(r); err != nil {
					return err
				}
			}
			res, err := ins.ExecContext(ctx, insertRunOrKeep, r.args()...)
			if err != nil {
				return fmt.Errorf("record run: %w", err)
			}
			if n, err := res.RowsAffected(); err != nil {
				return fmt.Errorf("record run: %w", err)
			} else if n == 1 {
				r.got, r.inserted = r.id, true
				continue
			}
			if r.dedupKey == "" {
				return errors.New("record run: the run's id is taken")
			}
			if err := sel.QueryRowContext(ctx, selectDedupRun, r.workflowID, r.dedupKey).Scan(&r.got); err != nil {
				return fmt.Errorf("read deduplicated run: %w", err)
			}
		}
		return nil
	})
}

const selectDedupRun = `SELECT id FROM runs WHERE workflow_id = $1 AND dedup_key = $2`

// writeStartsPostgres records a batch with one statement, atomic on its
// own, so that a batch costs one round trip; the runs travel as arrays.
// The statement cannot see its own inserts, so a dedup key twice in the
// batch is recorded once here and the others answered with that run.
func (e *Engine) writeStartsPostgres(ctx context.Context, batch []*runStart) error {
	first := make(map[[2]string]*runStart, len(batch))
	var send, dups []*runStart
	for _, r := range batch {
		r.got, r.inserted = "", false
		if e.starts.fault != nil {
			if err := e.starts.fault(r); err != nil {
				return err
			}
		}
		if r.dedupKey != "" {
			k := [2]string{r.workflowID, r.dedupKey}
			if _, ok := first[k]; ok {
				dups = append(dups, r)
				continue
			}
			first[k] = r
		}
		send = append(send, r)
	}
	n := len(send)
	var (
		ids, workspaces, workflows, versions, kinds = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		sources, payloads, keys, replays, parents   = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		parentNodes, frontiers                      = make([]string, n), make([]string, n)
		depths                                      = make([]int32, n)
		ats                                         = make([]time.Time, n)
	)
	byID := make(map[string]*runStart, n)
	for i, r := range send {
		ids[i], workspaces[i], workflows[i], versions[i], kinds[i] = r.id, r.workspaceID, r.workflowID, r.versionID, string(r.kind)
		sources[i], payloads[i], keys[i], replays[i], parents[i] = r.source, r.payload, r.dedupKey, r.o.replayOf, r.o.parentRun
		parentNodes[i], frontiers[i], depths[i], ats[i] = r.o.parentNode, r.frontier, int32(r.o.depth), r.at
		byID[r.id] = r
	}
	rows, err := e.db.Write().QueryContext(ctx, `WITH v AS (
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
				$9::text[], $10::integer[], $11::text[], $12::text[], $13::text[], $14::timestamptz[])
				AS v (id, workspace_id, workflow_id, version_id, kind, source, payload, dedup_key, replay_of, replay_depth,
					parent_run_id, parent_node_id, frontier, at)
		), ins AS (
			INSERT INTO runs (id, workspace_id, workflow_id, version_id, kind, status, source, trigger_payload,
				dedup_key, replay_of, replay_depth, parent_run_id, parent_node_id, frontier, due_at, created_at, updated_at)
			SELECT id, workspace_id, workflow_id, version_id, kind, 'pending', source, payload, NULLIF(dedup_key, ''), NULLIF(replay_of, ''),
				replay_depth, NULLIF(parent_run_id, ''), NULLIF(parent_node_id, ''), frontier, at, at, at FROM v
			ON CONFLICT DO NOTHING RETURNING id
		)
		SELECT v.id, ins.id IS NOT NULL, COALESCE(ins.id, '') FROM v LEFT JOIN ins ON ins.id = v.id`,
		ids, workspaces, workflows, versions, kinds, sources, payloads, keys, replays, depths, parents, parentNodes, frontiers, ats)
	if err != nil {
		return fmt.Errorf("record runs: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, got string
		var inserted bool
		if err := rows.Scan(&id, &inserted, &got); err != nil {
			return fmt.Errorf("record runs: %w", err)
		}
		if r := byID[id]; r != nil {
			r.got, r.inserted = got, inserted
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("record runs: %w", err)
	}
	rows.Close()
	for _, r := range send {
		if r.got != "" {
			continue
		}
		if r.dedupKey == "" {
			return errors.New("record run: the run's id is taken")
		}
		// Its key was recorded before (a redelivery, or another process
		// meanwhile): read that run through the dedup index, one lookup
		// per such run rather than a join the planner may not range.
		if err := e.db.Write().QueryRowContext(ctx, selectDedupRun, r.workflowID, r.dedupKey).Scan(&r.got); err != nil {
			return fmt.Errorf("read deduplicated run: %w", err)
		}
	}
	for _, r := range dups {
		r.got = first[[2]string{r.workflowID, r.dedupKey}].got
	}
	return nil
}
