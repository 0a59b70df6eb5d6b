package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"taskjuice/internal/db"
)

// Every process running the engine (Run) keeps a heartbeat row. When a
// process dies without giving its runs up (kill -9, a lost machine), its
// leases would otherwise hold those runs for a whole lease; instead, any
// other process that sees its heartbeat go stale takes its leases over
// (clears them), and the runs are claimed again at once. Fencing still
// holds: a process wrongly taken for dead finds its lease token gone and
// records nothing. On SQLite, which one process uses by design, a starting
// process takes over the leases of every process that ran before it.

// leasePrefix is what every lease token of the process owner starts with.
func leasePrefix(owner string) string { return owner + "#" }

// beat records that this process is alive.
func (e *Engine) beat(ctx context.Context) error {
	now := e.now()
	_, err := e.db.Write().ExecContext(ctx, `INSERT INTO engine_processes (owner, started_at, heartbeat_at) VALUES ($1, $2, $2)
		ON CONFLICT (owner) DO UPDATE SET heartbeat_at = excluded.heartbeat_at`, e.o.Owner, now)
	if err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	return nil
}

// takeOver clears the leases of processes whose heartbeat is older than
// the heartbeat timeout (on start with SQLite: of every other process) and
// forgets those processes. It returns how many runs it freed.
func (e *Engine) takeOver(ctx context.Context, everyOther bool) (int, error) {
	cutoff := e.now().Add(-e.o.HeartbeatTimeout)
	query := `SELECT owner FROM engine_processes WHERE owner <> $1 AND heartbeat_at < $2`
	args := []any{e.o.Owner, cutoff}
	if everyOther {
		query, args = `SELECT owner FROM engine_processes WHERE owner <> $1`, []any{e.o.Owner}
	}
	rows, err := e.db.Read().QueryContext(ctx, query, args...)
	if err != nil {
		return 0, fmt.Errorf("read stale processes: %w", err)
	}
	var gone []string
	for rows.Next() {
		var owner string
		if err := rows.Scan(&owner); err != nil {
			rows.Close()
			return 0, fmt.Errorf("read stale processes: %w", err)
		}
		gone = append(gone, owner)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("read stale processes: %w", err)
	}
	freed := 0
	for _, owner := range gone {
		n, err := e.freeLeasesOf(ctx, owner)
		if err != nil {
			return freed, err
		}
		freed += n
		e.o.Log.Warn("engine: took over the runs of a process that stopped without giving them up", "process", owner, "runs", n)
	}
	if freed > 0 {
		e.notify(ctx)
	}
	return freed, nil
}

// freeLeasesOf clears the leases held by owner's workers and forgets owner,
// in one transaction.
func (e *Engine) freeLeasesOf(ctx context.Context, owner string) (int, error) {
	prefix := leasePrefix(owner)
	var n int64
	err := e.db.InTx(ctx, func(tx db.Querier) error {
		res, err := tx.ExecContext(ctx, `UPDATE runs SET lease_owner = '', lease_until = NULL
			WHERE lease_until IS NOT NULL AND substr(lease_owner, 1, length($1)) = $1`, prefix)
		if err != nil {
			return fmt.Errorf("take over leases: %w", err)
		}
		n, _ = res.RowsAffected()
		_, err = tx.ExecContext(ctx, `DELETE FROM engine_processes WHERE owner = $1`, owner)
		return err
	})
	return int(n), err
}

// heartbeat beats and looks for dead processes every Heartbeat until ctx
// ends.
func (e *Engine) heartbeat(ctx context.Context) {
	t := time.NewTicker(e.o.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := e.beat(ctx); err != nil && ctx.Err() == nil {
			e.o.Log.Warn("engine", "err", err)
		}
		if _, err := e.takeOver(ctx, false); err != nil && ctx.Err() == nil {
			e.o.Log.Warn("engine", "err", err)
		}
	}
}

// signOff forgets this process once it has given every run up.
func (e *Engine) signOff(ctx context.Context) {
	if _, err := e.db.Write().ExecContext(ctx, `DELETE FROM engine_processes WHERE owner = $1`, e.o.Owner); err != nil && !errors.Is(err, context.Canceled) {
		e.o.Log.Warn("engine: sign off", "err", err)
	}
}
