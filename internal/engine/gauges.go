package engine

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"taskjuice/internal/db"
)

// RunCount is how many runs of a workspace are in one unfinished state now:
// Reason is the pause reason of paused runs and the wait reason of waiting
// ones.
type RunCount struct {
	WorkspaceID, Status, Reason string
	Runs                        int64
}

// UnfinishedRuns counts the runs not finished yet, by workspace, status
// and reason. Each count is a range of runs_workspace_status, whatever the
// number of finished runs.
func UnfinishedRuns(ctx context.Context, d *db.DB) ([]RunCount, error) {
	workspaces, err := db.Strings(ctx, d.Read(), `SELECT id FROM workspaces`)
	if err != nil {
		return nil, fmt.Errorf("list workspaces: %w", err)
	}
	var out []RunCount
	for _, ws := range workspaces {
		for _, status := range []Status{StatusPending, StatusRunning, StatusWaiting, StatusPaused} {
			counts, err := countRuns(ctx, d, ws, status)
			if err != nil {
				return nil, err
			}
			out = append(out, counts...)
		}
	}
	return out, nil
}

func countRuns(ctx context.Context, d *db.DB, ws string, status Status) ([]RunCount, error) {
	reason := "''"
	switch status {
	case StatusPaused:
		reason = "pause_reason"
	case StatusWaiting:
		reason = "wait_reason"
	}
	rows, err := d.Read().QueryContext(ctx, `SELECT `+reason+`, COUNT(*) FROM runs WHERE workspace_id = $1 AND status = $2 GROUP BY 1`, ws, string(status))
	if err != nil {
		return nil, fmt.Errorf("count runs: %w", err)
	}
	defer rows.Close()
	var out []RunCount
	for rows.Next() {
		c := RunCount{WorkspaceID: ws, Status: string(status)}
		if err := rows.Scan(&c.Reason, &c.Runs); err != nil {
			return nil, fmt.Errorf("count runs: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// Queue is the work due now: how many runs are due and how long the
// oldest has waited (a range of runs_due).
func Queue(ctx context.Context, d *db.DB, now time.Time) (due int64, oldest time.Duration, err error) {
	if err = d.Read().QueryRowContext(ctx, `SELECT COUNT(*) FROM runs WHERE due_at IS NOT NULL AND due_at <= $1`, now).Scan(&due); err != nil {
		return 0, 0, fmt.Errorf("read queue: %w", err)
	}
	var first time.Time
	err = d.Read().QueryRowContext(ctx, `SELECT due_at FROM runs WHERE due_at IS NOT NULL AND due_at <= $1 ORDER BY due_at LIMIT 1`, now).Scan(&first)
	if errors.Is(err, sql.ErrNoRows) {
		return due, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("read queue: %w", err)
	}
	return due, max(now.Sub(first), 0), nil
}
