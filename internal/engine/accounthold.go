package engine

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"taskjuice/internal/db"
)

// A reconnect that brought back a different external account keeps the
// runs held on the connection held until someone decides (internal/
// connection records that decision in connection_account_holds, in the
// reconnect's transaction). Until then the engine resumes none of them:
// not by itself, not in bulk, not one by one.

// MsgKeptHeld refuses to resume runs a reconnect as another account keeps
// held.
const MsgKeptHeld = "Its connection was reconnected as a different account than the one these runs were made with, so they are kept held. Use “Release them anyway” on the connection page if they should run against the new account."

// accountHeld reports whether a connection has an undecided account hold.
func accountHeld(ctx context.Context, q db.Querier, connID string) (bool, error) {
	var n int
	err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM connection_account_holds WHERE connection_id = $1 AND released_at IS NULL`, connID).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("read account hold: %w", err)
	}
	return n > 0, nil
}

// HeldOn counts the workspace's runs held for reauthorization on a
// connection.
func (e *Engine) HeldOn(ctx context.Context, workspaceID, connID string) (int, error) {
	var n int
	err := e.db.Read().QueryRowContext(ctx, `SELECT COUNT(*) FROM runs WHERE workspace_id = $1 AND paused_connection_id = $2
		AND status = 'paused' AND pause_reason = 'reauth'`, workspaceID, connID).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count held runs: %w", err)
	}
	return n, nil
}

// KeptHeld says why a run is still held after its connection came back,
// for the run page: a sentence when a reconnect as another account keeps
// it held until someone decides, "" otherwise.
func (e *Engine) KeptHeld(ctx context.Context, r Run) (string, error) {
	if r.Status != StatusPaused || r.PauseReason != PauseReauth || r.PausedConnectionID == "" {
		return "", nil
	}
	var prev, cur string
	err := e.db.Read().QueryRowContext(ctx, `SELECT previous_account_name, new_account_name FROM connection_account_holds
		WHERE connection_id = $1 AND released_at IS NULL`, r.PausedConnectionID).Scan(&prev, &cur)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read account hold: %w", err)
	}
	return fmt.Sprintf("Still held: its connection was reconnected as “%s” instead of “%s”, so this run waits for someone to release it on the connection page rather than run against another account's data.", cur, prev), nil
}
