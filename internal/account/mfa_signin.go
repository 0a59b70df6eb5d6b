package account

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
)

// startChallenge keeps a sign-in whose password was right on the server
// until its code comes, and takes the attempt back from the limits (the
// pair's earlier failures stay until the code is right).
func (s *Service) startChallenge(ctx context.Context, att *attempt, userID, email string) (SignInStep, error) {
	now := s.now()
	step := SignInStep{MFAToken: newToken("tjm_"), MFAExpires: now.Add(MFAChallengeTTL)}
	err := s.db.InTx(ctx, func(tx db.Querier) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO mfa_challenges (token_hash, user_id, email, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)`,
			hashToken(step.MFAToken), userID, email, now, step.MFAExpires); err != nil {
			return fmt.Errorf("start mfa challenge: %w", err)
		}
		return s.release(ctx, tx, att, false)
	})
	if err != nil {
		return SignInStep{}, err
	}
	return step, nil
}

// MFAChallengeEmail names whose sign-in a waiting challenge is, for the
// code page; an unknown or expired one is Gone.
func (s *Service) MFAChallengeEmail(ctx context.Context, token string) (string, error) {
	var email string
	err := s.db.Read().QueryRowContext(ctx, `SELECT email FROM mfa_challenges WHERE token_hash = $1 AND expires_at > $2`,
		hashToken(token), s.now()).Scan(&email)
	if errors.Is(err, sql.ErrNoRows) {
		return "", apperr.Gone("signin_expired", MsgSigninExpired)
	}
	if err != nil {
		return "", fmt.Errorf("read mfa challenge: %w", err)
	}
	return email, nil
}

// CompleteMFA finishes a sign-in waiting for its code: a current TOTP code
// not used before, or an unused backup code. Wrong codes count against the
// sign-in limits, and after a few the password must be given again.
func (s *Service) CompleteMFA(ctx context.Context, token, code, ip, userAgent string) (Session, Principal, error) {
	var userID, email string
	err := s.db.Read().QueryRowContext(ctx, `SELECT user_id, email FROM mfa_challenges WHERE token_hash = $1 AND expires_at > $2`,
		hashToken(token), s.now()).Scan(&userID, &email)
	if errors.Is(err, sql.ErrNoRows) {
		return Session{}, Principal{}, apperr.Gone("signin_expired", MsgSigninExpired)
	}
	if err != nil {
		return Session{}, Principal{}, fmt.Errorf("read mfa challenge: %w", err)
	}
	att, err := s.admit(ctx, email, ip)
	if err != nil {
		return Session{}, Principal{}, err
	}
	var ok bool
	err = s.db.InTx(ctx, func(tx db.Querier) error {
		var err error
		if ok, err = s.useCode(ctx, tx, userID, code); err != nil || !ok {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM mfa_challenges WHERE token_hash = $1`, hashToken(token)); err != nil {
			return fmt.Errorf("end mfa challenge: %w", err)
		}
		return s.release(ctx, tx, att, true)
	})
	if err != nil {
		return Session{}, Principal{}, err
	}
	ctx = WithAddress(ctx, ip)
	if !ok {
		if err := s.auditSignIn(ctx, userID, AuditMFAFailed, "wrong code"); err != nil {
			return Session{}, Principal{}, err
		}
		return Session{}, Principal{}, s.wrongCode(ctx, token)
	}
	sess, p, err := s.OpenSession(ctx, userID, ip, userAgent)
	if err == nil {
		err = s.auditSignIn(ctx, userID, AuditSignIn, "password and MFA code")
	}
	return sess, p, err
}

// wrongCode counts a wrong code against the challenge (the limits counted
// the attempt when they let it through).
func (s *Service) wrongCode(ctx context.Context, token string) error {
	var wrong int
	err := s.db.InTx(ctx, func(tx db.Querier) error {
		err := tx.QueryRowContext(ctx, `UPDATE mfa_challenges SET wrong = wrong + 1 WHERE token_hash = $1 RETURNING wrong`, hashToken(token)).Scan(&wrong)
		if errors.Is(err, sql.ErrNoRows) {
			wrong = maxWrongCodes
			return nil
		}
		if err != nil {
			return fmt.Errorf("count wrong code: %w", err)
		}
		if wrong >= maxWrongCodes {
			if _, err := tx.ExecContext(ctx, `DELETE FROM mfa_challenges WHERE token_hash = $1`, hashToken(token)); err != nil {
				return fmt.Errorf("end mfa challenge: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if wrong >= maxWrongCodes {
		return apperr.Gone("signin_expired", "Too many wrong codes. Enter your email and password again.")
	}
	return apperr.Unauthorized(MsgBadCode)
}

// CancelMFAChallenge forgets a waiting sign-in (the person went back).
func (s *Service) CancelMFAChallenge(ctx context.Context, token string) error {
	if _, err := s.db.Write().ExecContext(ctx, `DELETE FROM mfa_challenges WHERE token_hash = $1`, hashToken(token)); err != nil {
		return fmt.Errorf("cancel mfa challenge: %w", err)
	}
	return nil
}

// MFAPolicy is an account's requirement that staff use MFA.
type MFAPolicy struct {
	Required   bool
	RequiredAt time.Time
	GraceDays  int
}

// Deadline is when staff without MFA are held at the enrollment page.
func (m MFAPolicy) Deadline() time.Time {
	return m.RequiredAt.Add(time.Duration(m.GraceDays) * 24 * time.Hour)
}

// MaxGraceDays bounds the grace period of a requirement.
const MaxGraceDays = 90

// MFAPolicyOf reads the principal's account's requirement.
func (s *Service) MFAPolicyOf(ctx context.Context, p Principal) (MFAPolicy, error) {
	var m MFAPolicy
	err := s.db.Read().QueryRowContext(ctx, `SELECT required_at, grace_days FROM account_mfa_policy WHERE account_id = $1`, p.AccountID).
		Scan(&m.RequiredAt, &m.GraceDays)
	if errors.Is(err, sql.ErrNoRows) {
		return MFAPolicy{}, nil
	}
	if err != nil {
		return MFAPolicy{}, fmt.Errorf("read mfa policy: %w", err)
	}
	m.Required, m.RequiredAt = true, m.RequiredAt.UTC()
	return m, nil
}

// SetMFAPolicy requires MFA of every staff member after graceDays, or
// stops requiring it; owners and admins only. Changing the grace period of
// a requirement keeps its start.
func (s *Service) SetMFAPolicy(ctx context.Context, p Principal, required bool, graceDays int) error {
	if !p.Can(CapManageWorkspaces) {
		return errAdminRequired
	}
	if !required {
		if _, err := s.db.Write().ExecContext(ctx, `DELETE FROM account_mfa_policy WHERE account_id = $1`, p.AccountID); err != nil {
			return fmt.Errorf("clear mfa policy: %w", err)
		}
		return nil
	}
	if graceDays < 0 || graceDays > MaxGraceDays {
		return apperr.Invalid("graceDays", fmt.Sprintf("Grace period must be 0–%d days", MaxGraceDays))
	}
	_, err := s.db.Write().ExecContext(ctx, `INSERT INTO account_mfa_policy (account_id, required_at, grace_days, set_by) VALUES ($1, $2, $3, $4)
		ON CONFLICT (account_id) DO UPDATE SET grace_days = excluded.grace_days, set_by = excluded.set_by`,
		p.AccountID, s.now(), graceDays, p.User.ID)
	if err != nil {
		return fmt.Errorf("set mfa policy: %w", err)
	}
	return nil
}

// RosterEntry is one staff member's enrollment.
type RosterEntry struct {
	User      User
	Role      Role
	EnabledAt *time.Time
}

// MFARoster lists the account's staff with their enrollment; owners and
// admins only.
func (s *Service) MFARoster(ctx context.Context, p Principal) ([]RosterEntry, error) {
	if !p.Can(CapManageWorkspaces) {
		return nil, errAdminRequired
	}
	rows, err := s.db.Read().QueryContext(ctx, `SELECT u.id, u.email, u.name, u.created_at, m.role, f.enabled_at
		FROM account_members m JOIN users u ON u.id = m.user_id LEFT JOIN user_mfa f ON f.user_id = u.id
		WHERE m.account_id = $1 ORDER BY u.email`, p.AccountID)
	if err != nil {
		return nil, fmt.Errorf("list mfa roster: %w", err)
	}
	defer rows.Close()
	var out []RosterEntry
	for rows.Next() {
		var e RosterEntry
		var role string
		var enabled sql.NullTime
		if err := rows.Scan(&e.User.ID, &e.User.Email, &e.User.Name, &e.User.CreatedAt, &role, &enabled); err != nil {
			return nil, fmt.Errorf("scan mfa roster: %w", err)
		}
		e.Role, e.EnabledAt, e.User.CreatedAt = Role(role), nullTime(enabled), e.User.CreatedAt.UTC()
		out = append(out, e)
	}
	return out, rows.Err()
}

// mfaHold reports whether a staff member must enroll before anything else:
// the account requires MFA, its grace period is over, and theirs is off.
func (s *Service) mfaHold(ctx context.Context, p Principal) (bool, error) {
	if !p.Role.IsStaff() {
		return false, nil
	}
	var m MFAPolicy
	var enabled sql.NullTime
	err := s.db.Read().QueryRowContext(ctx, `SELECT pol.required_at, pol.grace_days, f.enabled_at FROM account_mfa_policy pol
		LEFT JOIN user_mfa f ON f.user_id = $2 WHERE pol.account_id = $1`, p.AccountID, p.User.ID).Scan(&m.RequiredAt, &m.GraceDays, &enabled)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read mfa policy: %w", err)
	}
	return !enabled.Valid && !s.now().Before(m.Deadline()), nil
}
