package trigger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"taskjuice/internal/db"
)

// PollGauges is the state of the app triggers that poll: how many there
// are, how many are held on a broken connection, how many are failing, and
// how late the most overdue poll is.
type PollGauges struct {
	Triggers, Held, Failing int64
	Lag                     time.Duration
}

// ReadPollGauges reads PollGauges; the lag is the front of poll_triggers_due.
func ReadPollGauges(ctx context.Context, d *db.DB, now time.Time) (PollGauges, error) {
	var g PollGauges
	err := d.Read().QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(CASE WHEN held THEN 1 ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN failures > 0 THEN 1 ELSE 0 END), 0) FROM poll_triggers`).Scan(&g.Triggers, &g.Held, &g.Failing)
	if err != nil {
		return g, fmt.Errorf("read poll triggers: %w", err)
	}
	var next time.Time
	err = d.Read().QueryRowContext(ctx, `SELECT next_poll_at FROM poll_triggers WHERE NOT held AND next_poll_at <= $1 ORDER BY next_poll_at LIMIT 1`, now).Scan(&next)
	if errors.Is(err, sql.ErrNoRows) {
		return g, nil
	}
	if err != nil {
		return g, fmt.Errorf("read poll lag: %w", err)
	}
	g.Lag = max(now.Sub(next), 0)
	return g, nil
}
