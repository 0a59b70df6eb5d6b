// Package spend owns a workspace's model spend and its hard cap per period
// (a calendar month, UTC). A model call is reserved at its worst-case cost
// before it is sent — refused with ErrCapReached when that could take the
// workspace over its cap — then settled at its actual cost, or released
// when it failed before costing anything. Soft notifications go out at 50,
// 80 and 95 percent of the cap, each once per period.
//
// The engine's use of it, per model call:
//
//	plan, _ := client.Plan(req)
//	res, err := spend.Reserve(ctx, wsID, ref, plan.WorstCase, spend.Call{...})
//	if errors.Is(err, spend.ErrCapReached) { halt the run; the call is never sent }
//	if res.Settled() { the call was already made and counted: do not send it again }
//	out, err := client.Complete(ctx, req)
//	if err != nil { spend.Release(ctx, res) } else { spend.Settle(ctx, res, out.Cost, out.Usage) }
package spend

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
	"taskjuice/internal/llm"
)

// Status of a spend entry.
type Status string

const (
	StatusReserved Status = "reserved"
	StatusSettled  Status = "settled"
	StatusReleased Status = "released"
)

// Call says what a reservation is for; every field is optional and kept
// for the record.
type Call struct {
	RunID      string
	StepKey    string
	ProviderID string
	Model      string
}

// Reservation is a model call counted against the cap.
type Reservation struct {
	ID          string
	WorkspaceID string
	Ref         string
	// Amount is the worst-case cost reserved.
	Amount llm.Money
	// Period is the period the call counts in ("2026-11").
	Period string
	Status Status
	// Cost is what the call cost, once settled.
	Cost llm.Money
}

// Settled reports whether the call was already made and counted: a
// reservation of a ref settled before (the same step run again after a
// crash). The caller must not send the call again under this ref.
func (r Reservation) Settled() bool { return r.Status == StatusSettled }

// ErrCapReached is matched (errors.Is) by the error Reserve returns when a
// call could take the workspace over its cap. That error is a *CapError
// and carries a user-facing apperr message (409, code spend_cap_reached).
var ErrCapReached = errors.New("spend cap reached")

// CapError is a refused reservation.
type CapError struct {
	WorstCase llm.Money // what the call could cost
	Cap       llm.Money
	Spent     llm.Money // settled this period
	Held      llm.Money // reserved by calls in progress
	Period    Period
}

// Error is the message people see.
func (e *CapError) Error() string {
	held := ""
	if e.Held > 0 {
		held = fmt.Sprintf(", %s held for calls in progress", e.Held)
	}
	return fmt.Sprintf("This call could cost up to %s, which would take the workspace over its spend cap of %s for %s (%s spent%s). Raise the cap or wait for the next period.",
		e.WorstCase, e.Cap, e.Period.Label(), e.Spent, held)
}

// Is makes errors.Is(err, ErrCapReached) hold.
func (e *CapError) Is(target error) bool { return target == ErrCapReached }

// Unwrap exposes the refusal as a user-facing apperr error (409).
func (e *CapError) Unwrap() error {
	return apperr.Conflict("spend_cap_reached", "", e.Error())
}

// Options configure the service.
type Options struct {
	// Now is the clock; nil means db.Now.
	Now func() time.Time
	// Alerts, when set, also emails the critical alert (95% of the cap).
	Alerts Alerter
	// ReservationTTL is how long an open reservation counts against the
	// cap (default an hour): a process that died between Reserve and
	// Settle does not hold the cap for ever.
	ReservationTTL time.Duration
}

// Service is the spend domain.
type Service struct {
	db  *db.DB
	now func() time.Time
	ttl time.Duration
	// alerts emails the critical alert (nil: the bell alone).
	alerts Alerter
}

// NewService returns the spend service.
func NewService(d *db.DB, o Options) *Service {
	s := &Service{db: d, now: o.Now, ttl: o.ReservationTTL, alerts: o.Alerts}
	if s.now == nil {
		s.now = db.Now
	}
	if s.ttl <= 0 {
		s.ttl = time.Hour
	}
	return s
}

// lock serializes the spend of one workspace for the rest of tx. On
// PostgreSQL it is a transaction-scoped advisory lock; on SQLite the
// single writer already serializes every write transaction.
func (s *Service) lock(ctx context.Context, tx db.Querier, workspaceID string) error {
	if s.db.Dialect() != db.Postgres {
		return nil
	}
	h := fnv.New64a()
	h.Write([]byte("spend:" + workspaceID))
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(h.Sum64())); err != nil {
		return fmt.Errorf("lock workspace spend: %w", err)
	}
	return nil
}

func (s *Service) capOf(ctx context.Context, q db.Querier, workspaceID string) (llm.Money, error) {
	var c int64
	err := q.QueryRowContext(ctx, `SELECT cap_micros FROM spend_caps WHERE workspace_id = $1`, workspaceID).Scan(&c)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read spend cap: %w", err)
	}
	return llm.Money(c), nil
}

// totals are the settled spend of a period and what open reservations
// hold (except the one named by ref).
func (s *Service) totals(ctx context.Context, q db.Querier, workspaceID, period, exceptRef string, now time.Time) (spent, held llm.Money, err error) {
	var sp, hd int64
	err = q.QueryRowContext(ctx, `SELECT
		CAST(COALESCE(SUM(CASE WHEN status = 'settled' THEN cost_micros ELSE 0 END), 0) AS BIGINT),
		CAST(COALESCE(SUM(CASE WHEN status = 'reserved' AND reserved_at > $3 AND ref <> $4 THEN reserved_micros ELSE 0 END), 0) AS BIGINT)
		FROM spend_entries WHERE workspace_id = $1 AND period = $2`, workspaceID, period, now.Add(-s.ttl), exceptRef).Scan(&sp, &hd)
	if err != nil {
		return 0, 0, fmt.Errorf("sum spend: %w", err)
	}
	return llm.Money(sp), llm.Money(hd), nil
}

// Reserve counts a model call at its worst-case cost before it is sent.
// ref names the call (for example "run/step/attempt") and is unique per
// workspace: reserving a ref already settled returns that settled
// reservation and counts nothing (see Reservation.Settled); reserving one
// still open renews it. When the settled spend of the period, plus open
// reservations, plus worstCase would exceed the cap, it returns a
// *CapError (errors.Is ErrCapReached) and records nothing.
func (s *Service) Reserve(ctx context.Context, workspaceID, ref string, worstCase llm.Money, call Call) (Reservation, error) {
	ref = strings.TrimSpace(ref)
	if ref == "" {
		return Reservation{}, errors.New("spend: reserve needs a ref")
	}
	if worstCase < 0 {
		return Reservation{}, errors.New("spend: negative worst case")
	}
	var res Reservation
	err := s.db.InTx(ctx, func(tx db.Querier) error {
		if err := s.lock(ctx, tx, workspaceID); err != nil {
			return err
		}
		now := s.now()
		per := PeriodOf(now)
		var status string
		var reserved, cost int64
		err := tx.QueryRowContext(ctx, `SELECT id, status, reserved_micros, cost_micros, period FROM spend_entries WHERE workspace_id = $1 AND ref = $2`,
			workspaceID, ref).Scan(&res.ID, &status, &reserved, &cost, &res.Period)
		exists := err == nil
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("read reservation: %w", err)
		}
		if exists && Status(status) == StatusSettled {
			res.WorkspaceID, res.Ref, res.Status = workspaceID, ref, StatusSettled
			res.Amount, res.Cost = llm.Money(reserved), llm.Money(cost)
			return nil
		}
		limit, err := s.capOf(ctx, tx, workspaceID)
		if err != nil {
			return err
		}
		if limit > 0 {
			spent, held, err := s.totals(ctx, tx, workspaceID, per.Key(), ref, now)
			if err != nil {
				return err
			}
			if spent+held+worstCase > limit {
				return &CapError{WorstCase: worstCase, Cap: limit, Spent: spent, Held: held, Period: per}
			}
		}
		res = Reservation{ID: res.ID, WorkspaceID: workspaceID, Ref: ref, Amount: worstCase, Period: per.Key(), Status: StatusReserved}
		if exists {
			_, err = tx.ExecContext(ctx, `UPDATE spend_entries SET status = 'reserved', reserved_micros = $1, period = $2, day = $3, reserved_at = $4 WHERE id = $5`,
				int64(worstCase), per.Key(), dayKey(now), now, res.ID)
		} else {
			res.ID = db.NewID()
			_, err = tx.ExecContext(ctx, `INSERT INTO spend_entries (id, workspace_id, ref, run_id, step_key, provider_id, model, status, reserved_micros, period, day, created_at, reserved_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7, 'reserved', $8, $9, $10, $11, $11)`,
				res.ID, workspaceID, ref, db.NullString(call.RunID), call.StepKey, call.ProviderID, call.Model, int64(worstCase), per.Key(), dayKey(now), now)
		}
		if err != nil {
			return fmt.Errorf("record reservation: %w", err)
		}
		return nil
	})
	if err != nil {
		return Reservation{}, err
	}
	return res, nil
}

// Settle turns a reservation into spend: the call's actual cost and the
// tokens it used. Settling a ref already settled changes nothing. It
// raises the period's soft notifications the spend has now reached.
func (s *Service) Settle(ctx context.Context, res Reservation, actual llm.Money, usage llm.Usage) error {
	if actual < 0 {
		return errors.New("spend: negative cost")
	}
	return s.db.InTx(ctx, func(tx db.Querier) error {
		if err := s.lock(ctx, tx, res.WorkspaceID); err != nil {
			return err
		}
		var status, period string
		err := tx.QueryRowContext(ctx, `SELECT status, period FROM spend_entries WHERE id = $1 AND workspace_id = $2`, res.ID, res.WorkspaceID).Scan(&status, &period)
		if errors.Is(err, sql.ErrNoRows) {
			return apperr.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("read reservation: %w", err)
		}
		if Status(status) == StatusSettled {
			return nil
		}
		// A released call that turns out to have cost something (it
		// answered after all) is still spend.
		_, err = tx.ExecContext(ctx, `UPDATE spend_entries SET status = 'settled', cost_micros = $1, prompt_tokens = $2, completion_tokens = $3, settled_at = $4 WHERE id = $5`,
			int64(actual), usage.PromptTokens, usage.CompletionTokens, s.now(), res.ID)
		if err != nil {
			return fmt.Errorf("settle reservation: %w", err)
		}
		return s.alert(ctx, tx, res.WorkspaceID, period)
	})
}

// Release gives back a reservation whose call failed before it cost
// anything. A settled reservation stays settled.
func (s *Service) Release(ctx context.Context, res Reservation) error {
	_, err := s.db.Write().ExecContext(ctx, `UPDATE spend_entries SET status = 'released' WHERE id = $1 AND workspace_id = $2 AND status = 'reserved'`,
		res.ID, res.WorkspaceID)
	if err != nil {
		return fmt.Errorf("release reservation: %w", err)
	}
	return nil
}

// Cap returns the workspace's cap per period; 0 means none.
func (s *Service) Cap(ctx context.Context, workspaceID string) (llm.Money, error) {
	return s.capOf(ctx, s.db.Read(), workspaceID)
}

// SetCap sets the workspace's cap per period; 0 removes it. A cap already
// passed by this period's spend raises its notifications now.
func (s *Service) SetCap(ctx context.Context, workspaceID string, limit llm.Money) error {
	if limit < 0 {
		return apperr.Invalid("capUsd", "The cap cannot be negative")
	}
	if limit > llm.MaxMoney {
		return apperr.Invalid("capUsd", "The cap is too large")
	}
	return s.db.InTx(ctx, func(tx db.Querier) error {
		if err := s.lock(ctx, tx, workspaceID); err != nil {
			return err
		}
		before, err := s.capOf(ctx, tx, workspaceID)
		if err != nil {
			return err
		}
		if before != limit {
			if err := account.AuditByActor(ctx, tx, s.now(), workspaceID, account.AuditSpendCapChanged, "", capText(before)+" → "+capText(limit)); err != nil {
				return err
			}
		}
		if limit == 0 {
			if _, err := tx.ExecContext(ctx, `DELETE FROM spend_caps WHERE workspace_id = $1`, workspaceID); err != nil {
				return fmt.Errorf("remove spend cap: %w", err)
			}
			return nil
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO spend_caps (workspace_id, cap_micros, period, updated_at) VALUES ($1, $2, 'month', $3)
			ON CONFLICT (workspace_id) DO UPDATE SET cap_micros = excluded.cap_micros, updated_at = excluded.updated_at`, workspaceID, int64(limit), s.now())
		if err != nil {
			return fmt.Errorf("set spend cap: %w", err)
		}
		return s.alert(ctx, tx, workspaceID, PeriodOf(s.now()).Key())
	})
}

// capText names a cap in the audit log.
func capText(m llm.Money) string {
	if m == 0 {
		return "no cap"
	}
	return m.String() + " a month"
}

// Thresholds are the soft notifications, in percent of the cap.
var Thresholds = []int{50, 80, 95}

// alert raises the notification of the highest threshold the period's
// spend has reached, unless it was raised before in the period. Lower
// thresholds passed in the same step are recorded without a notification
// of their own: one jump from 40% to 96% says so once, at 95%. The
// primary key of spend_alerts keeps each at most once per period.
func (s *Service) alert(ctx context.Context, tx db.Querier, workspaceID, periodKey string) error {
	limit, err := s.capOf(ctx, tx, workspaceID)
	if err != nil || limit == 0 {
		return err
	}
	spent, _, err := s.totals(ctx, tx, workspaceID, periodKey, "", s.now())
	if err != nil {
		return err
	}
	top := -1
	for i, t := range Thresholds {
		if int64(spent)*100 >= int64(limit)*int64(t) {
			top = i
		}
	}
	if top < 0 {
		return nil
	}
	now := s.now()
	for i := top; i >= 0; i-- {
		t := Thresholds[i]
		res, err := tx.ExecContext(ctx, `INSERT INTO spend_alerts (workspace_id, period, threshold, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`,
			workspaceID, periodKey, t, now)
		if err != nil {
			return fmt.Errorf("record spend alert: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("record spend alert: %w", err)
		}
		if n == 0 || i != top {
			continue
		}
		id, err := s.notify(ctx, tx, workspaceID, periodKey, t, spent, limit)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE spend_alerts SET notification_id = $1 WHERE workspace_id = $2 AND period = $3 AND threshold = $4`,
			id, workspaceID, periodKey, t); err != nil {
			return fmt.Errorf("record spend alert: %w", err)
		}
	}
	return nil
}

// Alerter emails a critical spend alert in the transaction raising it.
type Alerter interface {
	SpendAlert(ctx context.Context, tx db.Querier, workspaceID, title, body, link string) error
}

// NotificationKind is the notifications.kind of the alert at threshold t:
// "spend-50", "spend-80", "spend-95".
func NotificationKind(t int) string { return fmt.Sprintf("spend-%d", t) }

func (s *Service) notify(ctx context.Context, tx db.Querier, workspaceID, periodKey string, threshold int, spent, limit llm.Money) (string, error) {
	var slug, name string
	if err := tx.QueryRowContext(ctx, `SELECT slug, name FROM workspaces WHERE id = $1`, workspaceID).Scan(&slug, &name); err != nil {
		return "", fmt.Errorf("read workspace: %w", err)
	}
	label := periodKey
	if t, err := time.Parse("2006-01", periodKey); err == nil {
		label = PeriodOf(t).Label()
	}
	severity := "warning"
	if threshold >= 95 {
		severity = "critical"
	}
	title := fmt.Sprintf("Spend at %d%% of the cap", threshold)
	body := fmt.Sprintf("%s has spent %s of its %s spend cap for %s. At the cap, model calls are refused and agent runs halt until the cap is raised or the next period begins.",
		name, spent, limit, label)
	id := db.NewID()
	_, err := tx.ExecContext(ctx, `INSERT INTO notifications (id, workspace_id, kind, severity, title, body, link, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		id, workspaceID, NotificationKind(threshold), severity, title, body, "/"+slug+"/analytics/costs", s.now())
	if err != nil {
		return "", fmt.Errorf("raise spend notification: %w", err)
	}
	if threshold >= 95 && s.alerts != nil {
		if err := s.alerts.SpendAlert(ctx, tx, workspaceID, title, body, "/"+slug+"/analytics/costs"); err != nil {
			return "", err
		}
	}
	return id, nil
}
