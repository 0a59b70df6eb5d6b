package connection

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// PassLimit bounds how many due connections one pass takes on.
const PassLimit = 200

// passWorkers bounds concurrent refreshes within one pass.
const passWorkers = 8

// Pass refreshes the connections whose refresh is due (ahead of expiry, or
// retrying after transient failures). It reads only due rows through the
// refresh_due_at index, so a pass with nothing due costs one index probe.
// It returns how many it refreshed.
func (r *Refresher) Pass(ctx context.Context) (int, error) {
	due, err := r.due(ctx, PassLimit)
	if err != nil || len(due) == 0 {
		return 0, err
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		done int
		sem  = make(chan struct{}, passWorkers)
	)
	for _, d := range due {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			// From the version found due: if another process renewed the
			// token since, its result stands and nothing is called.
			_, err := r.shared(ctx, d.id, d.version)
			switch {
			case err == nil:
				mu.Lock()
				done++
				mu.Unlock()
			case errors.Is(err, ErrNeedsReauth), ctx.Err() != nil:
				// Already recorded (or shutting down).
			default:
				r.o.Log.Warn("scheduled token refresh failed", "connection", d.id, "err", err)
			}
		}()
	}
	wg.Wait()
	return done, nil
}

type dueRow struct {
	id      string
	version int64
}

func (r *Refresher) due(ctx context.Context, limit int) ([]dueRow, error) {
	now := r.now()
	rows, err := r.svc.db.Read().QueryContext(ctx, `SELECT id, credential_version FROM connections
		WHERE refresh_due_at <= $1 AND status = 'active' AND (refresh_lease_until IS NULL OR refresh_lease_until < $1)
		ORDER BY refresh_due_at LIMIT $2`, now, limit)
	if err != nil {
		return nil, fmt.Errorf("find due refreshes: %w", err)
	}
	defer rows.Close()
	var out []dueRow
	for rows.Next() {
		var d dueRow
		if err := rows.Scan(&d.id, &d.version); err != nil {
			return nil, fmt.Errorf("scan due refresh: %w", err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// Run makes passes until ctx ends: at once when a pass was full (more may
// be due), else every interval.
func (r *Refresher) Run(ctx context.Context, interval time.Duration) error {
	for {
		n, err := r.Pass(ctx)
		if err != nil && ctx.Err() == nil {
			r.o.Log.Warn("refresher pass", "err", err)
		}
		wait := interval
		if n >= PassLimit {
			wait = 0
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}
