package engine

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
)

// Retention is how long a workspace keeps its finished runs (completed,
// failed, cancelled) with their steps: at most Days days and at most
// MaxRunsPerWorkflow runs of each workflow. Unfinished runs are kept.
type Retention struct {
	Days               int        `json:"days"`
	MaxRunsPerWorkflow int        `json:"maxRunsPerWorkflow"`
	LastPrunedAt       *time.Time `json:"lastPrunedAt,omitempty"`
	LastPruned         int        `json:"lastPruned"`
}

// DefaultRetention is a workspace's until someone sets another.
var DefaultRetention = Retention{Days: 30, MaxRunsPerWorkflow: 100000}

// MsgRetention refuses retention out of bounds.
const MsgRetention = "Keep runs 1 to 3650 days, and 100 to 10,000,000 runs per workflow"

// Retention reads a workspace's retention.
func (e *Engine) Retention(ctx context.Context, workspaceID string) (Retention, error) {
	r := DefaultRetention
	var at sql.NullTime
	err := e.db.Read().QueryRowContext(ctx, `SELECT days, max_runs_per_workflow, pruned_at, pruned_runs FROM run_retention WHERE workspace_id = $1`, workspaceID).
		Scan(&r.Days, &r.MaxRunsPerWorkflow, &at, &r.LastPruned)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("read retention: %w", err)
	}
	r.LastPrunedAt = timePtr(at)
	return r, nil
}

// SetRetention sets a workspace's retention; the next pruning pass applies it.
func (e *Engine) SetRetention(ctx context.Context, workspaceID string, days, maxRuns int) error {
	if days < 1 || days > 3650 || maxRuns < 100 || maxRuns > 10000000 {
		return apperr.Invalid("days", MsgRetention)
	}
	_, err := e.db.Write().ExecContext(ctx, `INSERT INTO run_retention (workspace_id, days, max_runs_per_workflow) VALUES ($1, $2, $3)
		ON CONFLICT (workspace_id) DO UPDATE SET days = excluded.days, max_runs_per_workflow = excluded.max_runs_per_workflow`, workspaceID, days, maxRuns)
	if err != nil {
		return fmt.Errorf("set retention: %w", err)
	}
	return nil
}

// PruneReport is what a pruning pass removed.
type PruneReport struct {
	Workspaces int           `json:"workspaces"`
	Runs       int           `json:"runs"`
	Batches    int           `json:"batches"`
	Took       time.Duration `json:"took"`
	// LongestBatch is the longest one transaction took: how long its locks
	// were held.
	LongestBatch time.Duration `json:"longestBatch"`
}

// pruneBatch is how many runs (with their steps and events) one
// transaction deletes: small, so no lock is held long.
const pruneBatch = 500

var finishedStatuses = []Status{StatusCompleted, StatusFailed, StatusCancelled}
var pauseReasons = []PauseReason{"", PauseReauth, PauseOperator, PauseThroughput, PauseSpendCap}

// Prune deletes, workspace by workspace, the finished runs older than the
// workspace keeps them and those beyond its runs per workflow, oldest
// first, in transactions of at most pruneBatch runs, and records what it
// removed. Every selection is a range of an index of runs.
func (e *Engine) Prune(ctx context.Context) (PruneReport, error) {
	start := time.Now()
	var rep PruneReport
	workspaces, err := db.Strings(ctx, e.db.Read(), `SELECT id FROM workspaces ORDER BY id`)
	if err != nil {
		return rep, fmt.Errorf("list workspaces: %w", err)
	}
	e.longestBatch.Store(0)
	for _, ws := range workspaces {
		n, batches, err := e.pruneWorkspace(ctx, ws)
		rep.Runs, rep.Batches = rep.Runs+n, rep.Batches+batches
		if err != nil {
			return rep, err
		}
		rep.Workspaces++
	}
	rep.Took, rep.LongestBatch = time.Since(start), time.Duration(e.longestBatch.Load())
	return rep, nil
}

func (e *Engine) pruneWorkspace(ctx context.Context, ws string) (int, int, error) {
	r, err := e.Retention(ctx, ws)
	if err != nil {
		return 0, 0, err
	}
	cutoff := e.now().Add(-time.Duration(r.Days) * 24 * time.Hour)
	removed, batches := 0, 0
	for _, st := range finishedStatuses {
		for _, reason := range pauseReasons {
			n, b, err := e.deleteInBatches(ctx, `SELECT id FROM runs WHERE workspace_id = $1 AND status = $2 AND pause_reason = $3 AND created_at < $4 LIMIT $5`,
				ws, string(st), string(reason), cutoff)
			removed, batches = removed+n, batches+b
			if err != nil {
				return removed, batches, err
			}
		}
	}
	n, b, err := e.pruneBeyondCount(ctx, ws, r.MaxRunsPerWorkflow)
	removed, batches = removed+n, batches+b
	if err != nil {
		return removed, batches, err
	}
	_, err = e.db.Write().ExecContext(ctx, `INSERT INTO run_retention (workspace_id, days, max_runs_per_workflow, pruned_at, pruned_runs) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (workspace_id) DO UPDATE SET pruned_at = excluded.pruned_at, pruned_runs = excluded.pruned_runs`, ws, r.Days, r.MaxRunsPerWorkflow, e.now(), removed)
	if err != nil {
		return removed, batches, fmt.Errorf("record pruning: %w", err)
	}
	return removed, batches, nil
}

// pruneBeyondCount deletes each workflow's finished runs older than its
// newest max runs.
func (e *Engine) pruneBeyondCount(ctx context.Context, ws string, max int) (int, int, error) {
	workflows, err := db.Strings(ctx, e.db.Read(), `SELECT id FROM workflows WHERE workspace_id = $1`, ws)
	if err != nil {
		return 0, 0, fmt.Errorf("list workflows: %w", err)
	}
	removed, batches := 0, 0
	for _, wf := range workflows {
		var edge time.Time
		err := e.db.Read().QueryRowContext(ctx, `SELECT created_at FROM runs WHERE workflow_id = $1 ORDER BY created_at DESC LIMIT 1 OFFSET $2`, wf, max).Scan(&edge)
		if errors.Is(err, sql.ErrNoRows) {
			continue // no more runs than it keeps
		}
		if err != nil {
			return removed, batches, fmt.Errorf("find the oldest run kept: %w", err)
		}
		n, b, err := e.deleteInBatches(ctx, `SELECT id FROM runs WHERE workflow_id = $1 AND created_at <= $2 AND status IN ('completed', 'failed', 'cancelled') LIMIT $3`, wf, edge)
		removed, batches = removed+n, batches+b
		if err != nil {
			return removed, batches, err
		}
	}
	return removed, batches, nil
}

// deleteInBatches deletes the runs pick selects (its last parameter is the
// batch size), a batch per transaction, until it selects none.
func (e *Engine) deleteInBatches(ctx context.Context, pick string, args ...any) (int, int, error) {
	removed, batches := 0, 0
	for ctx.Err() == nil {
		var n int64
		began := time.Now()
		err := e.db.InTx(ctx, func(tx db.Querier) error {
			res, err := tx.ExecContext(ctx, `DELETE FROM runs WHERE id IN (`+pick+`)`, append(args, pruneBatch)...)
			if err != nil {
				return fmt.Errorf("prune runs: %w", err)
			}
			n, err = res.RowsAffected()
			return err
		})
		if err != nil {
			return removed, batches, err
		}
		if took := int64(time.Since(began)); took > e.longestBatch.Load() {
			e.longestBatch.Store(took)
		}
		if n == 0 {
			return removed, batches, nil
		}
		removed, batches = removed+int(n), batches+1
	}
	return removed, batches, ctx.Err()
}
