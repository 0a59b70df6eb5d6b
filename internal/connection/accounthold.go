package connection

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
)

// AccountHold is the decision a reconnect left open: it brought back a
// different external account (Current) than the one the runs held on the
// connection were made with (Previous), so those runs stay held until
// someone releases them or the connection is reconnected with Previous.
type AccountHold struct {
	ConnectionID string
	Previous     ExternalAccount
	Current      ExternalAccount
	CreatedAt    time.Time
}

// Release reasons of an account hold.
const (
	releasedByPerson   = "released"
	releasedByOriginal = "original-account"
)

// MsgNothingKeptHeld answers a release when no decision is open any more.
const MsgNothingKeptHeld = "Nothing is kept held on this connection any more."

// openHold reads a connection's undecided account hold.
func openHold(ctx context.Context, q db.Querier, connID string) (AccountHold, bool, error) {
	h := AccountHold{ConnectionID: connID}
	err := q.QueryRowContext(ctx, `SELECT previous_account_id, previous_account_name, new_account_id, new_account_name, created_at
		FROM connection_account_holds WHERE connection_id = $1 AND released_at IS NULL`, connID).
		Scan(&h.Previous.ID, &h.Previous.Name, &h.Current.ID, &h.Current.Name, &h.CreatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return AccountHold{}, false, nil
	}
	if err != nil {
		return AccountHold{}, false, fmt.Errorf("read account hold: %w", err)
	}
	h.CreatedAt = h.CreatedAt.UTC()
	return h, true, nil
}

// AccountHold returns the connection's undecided account hold, if any.
func (s *Service) AccountHold(ctx context.Context, ws account.Workspace, id string) (AccountHold, bool, error) {
	if _, err := s.Get(ctx, ws, id); err != nil {
		return AccountHold{}, false, err
	}
	return openHold(ctx, s.db.Read(), id)
}

// heldRuns counts the runs held for reauthorization on a connection: a
// reconnect as another account holds them only when there are some.
func heldRuns(ctx context.Context, q db.Querier, connID string) (int, error) {
	var n int
	err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM runs WHERE paused_connection_id = $1 AND status = 'paused' AND pause_reason = 'reauth'`, connID).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count held runs: %w", err)
	}
	return n, nil
}

// holdForAccount records, in the reconnect's transaction, that the runs
// held on the connection were made with prev while cur is now connected.
func (s *Service) holdForAccount(ctx context.Context, tx db.Querier, connID string, prev, cur ExternalAccount) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO connection_account_holds (connection_id, previous_account_id, previous_account_name,
		new_account_id, new_account_name, created_at) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (connection_id) DO UPDATE SET previous_account_id = excluded.previous_account_id,
		previous_account_name = excluded.previous_account_name, new_account_id = excluded.new_account_id,
		new_account_name = excluded.new_account_name, created_at = excluded.created_at,
		released_at = NULL, released_by = NULL, release_reason = ''`,
		connID, prev.ID, prev.Name, cur.ID, cur.Name, s.now())
	if err != nil {
		return fmt.Errorf("hold runs for the account: %w", err)
	}
	return nil
}

// releaseHold closes a connection's open account hold and raises the
// reauthorized signal again, so the held runs go on exactly as after a
// reconnect with the same account. It reports false when none was open.
func (s *Service) releaseHold(ctx context.Context, tx db.Querier, connID, reason string, actor Actor) (bool, error) {
	now := s.now()
	res, err := tx.ExecContext(ctx, `UPDATE connection_account_holds SET released_at = $1, released_by = $2, release_reason = $3
		WHERE connection_id = $4 AND released_at IS NULL`, now, db.NullString(actor.UserID), reason, connID)
	if err != nil {
		return false, fmt.Errorf("release account hold: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return false, nil
	}
	return true, s.raiseReauthorized(ctx, tx, connID, reason)
}

// raiseReauthorized raises a reauthorized signal without a status change:
// the engine and the alerts act on it as after a reconnect.
func (s *Service) raiseReauthorized(ctx context.Context, tx db.Querier, connID, reason string) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO connection_signals (id, connection_id, workspace_id, kind, reason, created_at)
		SELECT $1, id, workspace_id, $2, $3, $4 FROM connections WHERE id = $5`,
		db.NewID(), SignalReauthorized, reason, s.now(), connID)
	if err != nil {
		return fmt.Errorf("raise %s: %w", SignalReauthorized, err)
	}
	return nil
}

// ReleaseAccountHold is "Release them anyway": a person decides that the
// runs a reconnect as another account kept held may go on against the
// account now connected. They go on as after a same-account reconnect:
// agent runs and runs of auto-resume workflows by themselves, the others
// with Resume.
func (s *Service) ReleaseAccountHold(ctx context.Context, ws account.Workspace, id string, actor Actor) error {
	c, err := s.Get(ctx, ws, id)
	if err != nil {
		return err
	}
	if c.Status != StatusActive {
		return apperr.Conflict("connection_not_active", "", "This connection needs to be reconnected first; then decide about the runs it holds.")
	}
	return s.db.InTx(ctx, func(tx db.Querier) error {
		h, ok, err := openHold(ctx, tx, id)
		if err != nil {
			return err
		}
		if !ok {
			return apperr.Conflict("nothing_held", "", MsgNothingKeptHeld)
		}
		if _, err := s.releaseHold(ctx, tx, id, releasedByPerson, actor); err != nil {
			return err
		}
		return s.recordEvent(ctx, tx, id, c.Status, c.Status, "held runs released to the new account", actor,
			map[string]string{"externalAccount": h.Current.Name, "previousExternalAccount": h.Previous.Name})
	})
}
