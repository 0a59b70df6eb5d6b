package account

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"taskjuice/internal/apperr"
)

// Sessions last this long after their last use; their last use is
// recorded at most this often.
const (
	SessionTTL        = 30 * 24 * time.Hour
	sessionTouchEvery = 5 * time.Minute
)

// MsgBadCredentials is the one message for every failed sign-in, so it does
// not reveal which emails exist.
const MsgBadCredentials = "Email or password is incorrect"

// dummyHash is compared against when the email is unknown, so a failed
// sign-in takes as long whether or not the person exists.
var dummyHash = newDummyHash()

func newDummyHash() string {
	h, err := hashPassword("not-a-real-password-for-timing")
	if err != nil {
		panic(err)
	}
	return h
}

// Session is a signed-in browser. Token is the cookie value, known only at
// creation.
type Session struct {
	Token     string
	ExpiresAt time.Time
}

// SignInStep is where a sign-in stands after the password: signed in
// (Session set), or waiting for the person's MFA code (MFAToken set, to be
// given to CompleteMFA).
type SignInStep struct {
	Session   Session
	Principal Principal
	// MFAToken names the half-finished sign-in kept on the server until
	// MFAExpires; the browser holds it, the database only its hash.
	MFAToken   string
	MFAExpires time.Time
}

// SignIn checks an email and password and opens a session. A person with
// MFA on cannot sign in this way: PasswordStep and CompleteMFA take the
// code.
func (s *Service) SignIn(ctx context.Context, email, password, ip, userAgent string) (Session, Principal, error) {
	step, err := s.PasswordStep(ctx, email, password, ip, userAgent)
	if err != nil {
		return Session{}, Principal{}, err
	}
	if step.MFAToken != "" {
		return Session{}, Principal{}, apperr.Unauthorized(MsgCodeRequired)
	}
	return step.Session, step.Principal, nil
}

// PasswordStep checks an email and password under the sign-in limits. With
// MFA off it opens a session; with MFA on it starts the code step.
func (s *Service) PasswordStep(ctx context.Context, email, password, ip, userAgent string) (SignInStep, error) {
	email, err := NormalizeEmail(email)
	if err != nil {
		return SignInStep{}, apperr.Unauthorized(MsgBadCredentials)
	}
	att, err := s.admit(ctx, email, ip)
	if err != nil {
		return SignInStep{}, err
	}
	ctx = WithAddress(ctx, ip)
	userID, ok, err := s.verifyPassword(ctx, email, password)
	if err != nil {
		return SignInStep{}, err
	}
	if !ok {
		if err := s.auditSignIn(ctx, userID, AuditSignInFailed, "wrong password"); err != nil {
			return SignInStep{}, err
		}
		return SignInStep{}, apperr.Unauthorized(MsgBadCredentials) // the attempt stays counted
	}
	on, err := s.mfaOn(ctx, s.db.Read(), userID)
	if err != nil {
		return SignInStep{}, err
	}
	if on {
		return s.startChallenge(ctx, att, userID, email)
	}
	if err := s.release(ctx, s.db.Write(), att, true); err != nil {
		return SignInStep{}, err
	}
	sess, p, err := s.OpenSession(ctx, userID, ip, userAgent)
	if err == nil {
		err = s.auditSignIn(ctx, userID, AuditSignIn, "password")
	}
	return SignInStep{Session: sess, Principal: p}, err
}

// auditSignIn records a sign-in (or a refused one) in the log of the
// account the user belongs to; an email that is nobody's has no account
// to record it in.
func (s *Service) auditSignIn(ctx context.Context, userID, action, detail string) error {
	if userID == "" {
		return nil
	}
	p, err := s.principal(ctx, s.db.Read(), userID)
	if err != nil {
		return nil // no membership left: nothing to record it in
	}
	return s.audit(ctx, s.db.Write(), p.AccountID, p.User.ID, p.User.Email, action, p.User.Email, detail)
}

// verifyPassword compares the password with the person's; an unknown
// email is compared with a dummy hash so it takes as long.
func (s *Service) verifyPassword(ctx context.Context, email, password string) (userID string, ok bool, err error) {
	var hash string
	err = s.db.Read().QueryRowContext(ctx, `SELECT id, password_hash FROM users WHERE email = $1`, email).Scan(&userID, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		hash = dummyHash
	} else if err != nil {
		return "", false, fmt.Errorf("find user: %w", err)
	}
	ok, err = checkPassword(hash, password)
	if err != nil {
		return "", false, fmt.Errorf("check password: %w", err)
	}
	return userID, ok && userID != "", nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// SessionPrincipal returns who holds the session token. An unknown or
// expired token is Unauthorized. Active sessions slide forward.
func (s *Service) SessionPrincipal(ctx context.Context, token string) (Principal, error) {
	if token == "" {
		return Principal{}, apperr.Unauthorized("Sign in to continue")
	}
	now := s.now()
	h := hashToken(token)
	var userID string
	var lastSeen time.Time
	err := s.db.Read().QueryRowContext(ctx, `SELECT user_id, last_seen_at FROM sessions WHERE token_hash = $1 AND expires_at > $2`, h, now).
		Scan(&userID, &lastSeen)
	if errors.Is(err, sql.ErrNoRows) {
		return Principal{}, apperr.Unauthorized("Your session has ended. Sign in again.")
	}
	if err != nil {
		return Principal{}, fmt.Errorf("read session: %w", err)
	}
	if now.Sub(lastSeen) > sessionTouchEvery {
		if _, err := s.db.Write().ExecContext(ctx, `UPDATE sessions SET last_seen_at = $1, expires_at = $2 WHERE token_hash = $3`,
			now, now.Add(SessionTTL), h); err != nil {
			return Principal{}, fmt.Errorf("touch session: %w", err)
		}
	}
	p, err := s.principal(ctx, s.db.Read(), userID)
	if err != nil {
		return Principal{}, err
	}
	p.Via = "session"
	if p.MFAHold, err = s.mfaHold(ctx, p); err != nil {
		return Principal{}, err
	}
	return p, nil
}

// SignOut ends the session.
func (s *Service) SignOut(ctx context.Context, token string) error {
	if _, err := s.db.Write().ExecContext(ctx, `DELETE FROM sessions WHERE token_hash = $1`, hashToken(token)); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// Prune deletes expired sessions and MFA challenges, and sign-in
// failures older than the window. The server runs it periodically.
func (s *Service) Prune(ctx context.Context) (int64, error) {
	now := s.now()
	var total int64
	for _, q := range []struct {
		sql string
		arg time.Time
	}{
		{`DELETE FROM sessions WHERE expires_at <= $1`, now},
		{`DELETE FROM signin_throttle WHERE last_failure_at <= $1`, now.Add(-SigninWindow)},
		{`DELETE FROM mfa_challenges WHERE expires_at <= $1`, now},
	} {
		res, err := s.db.Write().ExecContext(ctx, q.sql, q.arg)
		if err != nil {
			return total, fmt.Errorf("prune: %w", err)
		}
		n, _ := res.RowsAffected()
		total += n
	}
	n, err := s.pruneAudit(ctx, now)
	return total + n, err
}
