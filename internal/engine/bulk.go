package engine

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
)

// BulkAction is what a bulk job does to each run it selected.
type BulkAction string

const (
	BulkResume BulkAction = "resume"
	BulkRetry  BulkAction = "retry" // from the failed step, on the version it ran
	BulkReplay BulkAction = "replay"
	BulkCancel BulkAction = "cancel"
)

// MaxBulkRuns bounds the runs one bulk job selects.
const MaxBulkRuns = 100000

// Messages of a refused bulk job.
const (
	MsgBulkAction  = `Choose what to do to the runs: "resume", "retry", "replay" or "cancel"`
	MsgBulkNone    = "Select at least one run"
	MsgBulkTooMany = "A bulk action takes at most 100,000 runs; narrow the filter"
)

// BulkJob is a bulk action and how far it got: each selected run is done
// or skipped (with why), a batch at a time.
type BulkJob struct {
	ID         string     `json:"id"`
	Action     BulkAction `json:"action"`
	Total      int        `json:"total"`
	Done       int        `json:"done"`
	Skipped    int        `json:"skipped"`
	Finished   bool       `json:"finished"`
	CreatedAt  time.Time  `json:"createdAt"`
	FinishedAt *time.Time `json:"finishedAt,omitempty"`
	// SkippedWhy counts the skipped runs by reason.
	SkippedWhy map[string]int `json:"skippedWhy,omitempty"`
}

// StartBulk records a bulk job on the runs given, or on every run the
// filter matches (when runIDs is nil): the selection is recorded now, the
// actions are taken in the background (WorkBulk). Runs of other
// workspaces are not selected.
func (e *Engine) StartBulk(ctx context.Context, workspaceID, actor string, action BulkAction, runIDs []string, filter *ListFilter) (BulkJob, error) {
	switch action {
	case BulkResume, BulkRetry, BulkReplay, BulkCancel:
	default:
		return BulkJob{}, apperr.Invalid("action", MsgBulkAction)
	}
	if filter == nil && len(runIDs) == 0 {
		return BulkJob{}, apperr.Invalid("runIds", MsgBulkNone)
	}
	if len(runIDs) > MaxBulkRuns {
		return BulkJob{}, apperr.Invalid("runIds", MsgBulkTooMany)
	}
	id, now := db.NewID(), e.now()
	err := e.db.InTx(ctx, func(tx db.Querier) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO bulk_jobs (id, workspace_id, action, actor_user_id, total, status, created_at) VALUES ($1, $2, $3, $4, 0, 'running', $5)`,
			id, workspaceID, string(action), db.NullString(actor), now); err != nil {
			return fmt.Errorf("record bulk job: %w", err)
		}
		n, err := e.selectBulk(ctx, tx, id, workspaceID, runIDs, filter)
		if err != nil {
			return err
		}
		if n == 0 {
			return apperr.Invalid("runIds", MsgBulkNone)
		}
		if n > MaxBulkRuns {
			return apperr.Invalid("filter", MsgBulkTooMany)
		}
		_, err = tx.ExecContext(ctx, `UPDATE bulk_jobs SET total = $1 WHERE id = $2`, n, id)
		return err
	})
	if err != nil {
		return BulkJob{}, err
	}
	return e.Bulk(ctx, workspaceID, id)
}

// selectBulk records the job's runs, oldest first, and counts them.
func (e *Engine) selectBulk(ctx context.Context, tx db.Querier, jobID, workspaceID string, runIDs []string, filter *ListFilter) (int, error) {
	if filter != nil {
		where, args := filter.where(workspaceID)
		args = append(args, jobID)
		res, err := tx.ExecContext(ctx, fmt.Sprintf(`INSERT INTO bulk_job_runs (job_id, seq, run_id)
			SELECT $%d, ROW_NUMBER() OVER (ORDER BY r.created_at, r.id), r.id FROM runs r WHERE %s`, len(args), strings.Join(where, " AND ")), e.db.PlanWithValues(args)...)
		if err != nil {
			return 0, fmt.Errorf("select runs: %w", err)
		}
		n, err := res.RowsAffected()
		return int(n), err
	}
	seen := map[string]bool{}
	n := 0
	for _, run := range runIDs {
		if seen[run] {
			continue
		}
		seen[run] = true
		res, err := tx.ExecContext(ctx, `INSERT INTO bulk_job_runs (job_id, seq, run_id) SELECT $1, $2, id FROM runs WHERE id = $3 AND workspace_id = $4`,
			jobID, n+1, run, workspaceID)
		if err != nil {
			return 0, fmt.Errorf("select runs: %w", err)
		}
		if k, _ := res.RowsAffected(); k == 1 {
			n++
		}
	}
	return n, nil
}

// Bulk reads a bulk job of the workspace.
func (e *Engine) Bulk(ctx context.Context, workspaceID, id string) (BulkJob, error) {
	var j BulkJob
	var status string
	var finished sql.NullTime
	err := e.db.Read().QueryRowContext(ctx, `SELECT id, action, total, done, skipped, status, created_at, finished_at FROM bulk_jobs WHERE id = $1 AND workspace_id = $2`,
		id, workspaceID).Scan(&j.ID, &j.Action, &j.Total, &j.Done, &j.Skipped, &status, &j.CreatedAt, &finished)
	if errors.Is(err, sql.ErrNoRows) {
		return j, apperr.ErrNotFound
	}
	if err != nil {
		return j, fmt.Errorf("read bulk job: %w", err)
	}
	j.Finished, j.FinishedAt = status == "finished", timePtr(finished)
	if j.Skipped == 0 {
		return j, nil
	}
	rows, err := e.db.Read().QueryContext(ctx, `SELECT reason, COUNT(*) FROM bulk_job_runs WHERE job_id = $1 AND outcome = 'skipped' GROUP BY reason`, id)
	if err != nil {
		return j, fmt.Errorf("read bulk job: %w", err)
	}
	defer rows.Close()
	j.SkippedWhy = map[string]int{}
	for rows.Next() {
		var why string
		var n int
		if err := rows.Scan(&why, &n); err != nil {
			return j, err
		}
		j.SkippedWhy[why] = n
	}
	return j, rows.Err()
}

// bulkBatch is how many runs a job takes on between two looks at its lease.
const (
	bulkBatch = 50
	bulkLease = 30 * time.Second
)

// WorkBulk takes up one bulk job whose lease is free and works through a
// batch of its runs, each action in its own transaction. It reports
// whether it found work. status reads a connection's status, for Resume.
func (e *Engine) WorkBulk(ctx context.Context, status ConnectionStatus) (bool, error) {
	now := e.now()
	var j struct {
		id, workspace, action, actor string
		created                      time.Time
	}
	var actor sql.NullString
	err := e.db.Write().QueryRowContext(ctx, `UPDATE bulk_jobs SET lease_owner = $1, lease_until = $2
		WHERE id = (SELECT id FROM bulk_jobs WHERE status = 'running' AND (lease_until IS NULL OR lease_until < $3) ORDER BY created_at LIMIT 1)
		AND status = 'running' AND (lease_until IS NULL OR lease_until < $3)
		RETURNING id, workspace_id, action, actor_user_id, created_at`, e.o.Owner, now.Add(bulkLease), now).Scan(&j.id, &j.workspace, &j.action, &actor, &j.created)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("claim bulk job: %w", err)
	}
	j.actor = actor.String
	defer func() {
		_, _ = e.db.Write().ExecContext(context.WithoutCancel(ctx), `UPDATE bulk_jobs SET lease_until = NULL WHERE id = $1 AND lease_owner = $2`, j.id, e.o.Owner)
	}()
	rows, err := e.db.Read().QueryContext(ctx, `SELECT seq, run_id FROM bulk_job_runs WHERE job_id = $1 AND outcome = '' ORDER BY seq LIMIT $2`, j.id, bulkBatch)
	if err != nil {
		return true, fmt.Errorf("read bulk job runs: %w", err)
	}
	type item struct {
		seq int
		run string
	}
	var items []item
	for rows.Next() {
		var it item
		if err := rows.Scan(&it.seq, &it.run); err != nil {
			rows.Close()
			return true, err
		}
		items = append(items, it)
	}
	rows.Close()
	if len(items) == 0 {
		_, err := e.db.Write().ExecContext(ctx, `UPDATE bulk_jobs SET status = 'finished', finished_at = $1 WHERE id = $2`, e.now(), j.id)
		return true, err
	}
	for _, it := range items {
		newRun, why, err := e.bulkOne(ctx, j.workspace, j.actor, BulkAction(j.action), it.run, j.created, status)
		if err != nil {
			return true, err
		}
		if err := e.bulkOutcome(ctx, j.id, it.seq, newRun, why); err != nil {
			return true, err
		}
	}
	return true, nil
}

// bulkOne takes the action on one run. A refusal a person would get (the
// run is not failed, not paused, …) skips the run with its message; other
// errors stop the batch, to be tried again.
func (e *Engine) bulkOne(ctx context.Context, workspaceID, actor string, action BulkAction, runID string, since time.Time, status ConnectionStatus) (string, string, error) {
	var newRun string
	var err error
	switch action {
	case BulkResume:
		err = e.Resume(ctx, workspaceID, runID, actor, status)
	case BulkCancel:
		err = e.Cancel(ctx, workspaceID, runID, actor)
	case BulkRetry, BulkReplay:
		// A retry or replay this job made before a crash is not made twice.
		col := "retry_of"
		if action == BulkReplay {
			col = "replay_of"
		}
		if qerr := e.db.Read().QueryRowContext(ctx, `SELECT id FROM runs WHERE `+col+` = $1 AND created_at >= $2 LIMIT 1`, runID, since).Scan(&newRun); qerr == nil {
			return newRun, "", nil
		}
		if action == BulkRetry {
			newRun, err = e.RetryFailed(ctx, workspaceID, runID, actor, RetryOriginal)
		} else {
			newRun, err = e.Replay(ctx, workspaceID, runID, actor)
		}
	}
	var ae *apperr.Error
	if errors.As(err, &ae) {
		return "", ae.Message, nil
	}
	if apperr.IsNotFound(err) {
		return "", "The run is no longer there", nil
	}
	return newRun, "", err
}

func (e *Engine) bulkOutcome(ctx context.Context, jobID string, seq int, newRun, why string) error {
	return e.db.InTx(ctx, func(tx db.Querier) error {
		outcome, counter := "done", "done"
		if why != "" {
			outcome, counter = "skipped", "skipped"
		}
		res, err := tx.ExecContext(ctx, `UPDATE bulk_job_runs SET outcome = $1, reason = $2, new_run_id = $3 WHERE job_id = $4 AND seq = $5 AND outcome = ''`,
			outcome, why, newRun, jobID, seq)
		if err != nil {
			return fmt.Errorf("record bulk outcome: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		_, err = tx.ExecContext(ctx, `UPDATE bulk_jobs SET `+counter+` = `+counter+` + 1 WHERE id = $1`, jobID)
		return err
	})
}

// CountRuns counts the runs a filter matches, up to limit+1: a count over
// limit says "more than limit" without counting on.
func (e *Engine) CountRuns(ctx context.Context, workspaceID string, f ListFilter, limit int) (int, error) {
	vf := f.Value
	f.Value = nil
	where, args := f.where(workspaceID)
	from := "runs r"
	if vf != nil {
		// Along the search's index, so counting stops at the limit.
		from = "run_values sv JOIN runs r ON r.id = sv.run_id"
		if len(where) == 1 {
			// Only the workspace, which the search's index holds too.
			from, where = "run_values sv", nil
		}
		args = append(args, vf.Field, vf.key())
		where = append(where, "sv.workspace_id = $1", fmt.Sprintf("sv.field = $%d", len(args)-1), fmt.Sprintf("sv.value = $%d", len(args)))
	}
	args = append(args, limit+1)
	var n int
	err := e.db.Read().QueryRowContext(ctx, fmt.Sprintf(`SELECT COUNT(*) FROM (SELECT 1 FROM %s WHERE %s LIMIT $%d) x`, from, strings.Join(where, " AND "), len(args)), e.db.PlanWithValues(args)...).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count runs: %w", err)
	}
	return n, nil
}
