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

// Sign-in limits: after this many failures for one email (or many more from
// one address) within the window, further attempts are refused until the
// oldest failure ages out. Kept in the database so every process agrees.
const (
	SigninWindow        = 15 * time.Minute
	MaxFailuresPerEmail = 5
	MaxFailuresPerIP    = 50
	SessionTTL          = 30 * 24 * time.Hour
	sessionTouchEvery   = 5 * time.Minute
)

// MsgBadCredentials is the one message for every failed sign-in, so it does
// not reveal which emails exist.
const MsgBadCredentials = "Email or password is incorrect"

// MsgTooManyAttempts is shown once the sign-in limit is reached.
const MsgTooManyAttempts = "Too many failed sign-in attempts. Wait 15 minutes and try again, or ask an administrator to reset your password."

// dummyHash is compared against when the email is unknown, so a failed
// sign-in takes as long whether or not the person exists.
var dummyHash = func() string {
	h, err := hashPassword("not-a-real-password-for-timing")
	if err != nil {
		panic(err)
	}
	return h
}()

// Session is a signed-in browser. Token is the cookie value, known only at
// creation.
type Session struct {
	Token     string
	ExpiresAt time.Time
}

// SignIn checks an email and password and opens a session.
func (s *Service) SignIn(ctx context.Context, email, password, ip, userAgent string) (Session, Principal, error) {
	email, err := NormalizeEmail(email)
	if err != nil {
		return Session{}, Principal{}, apperr.Unauthorized(MsgBadCredentials)
	}
	now := s.now()
	since := now.Add(-SigninWindow)
	var byEmail, byIP int
	if err := s.db.Read().QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM signin_failures WHERE email = $1 AND at > $2),
		(SELECT count(*) FROM signin_failures WHERE ip = $3 AND at > $2)`, email, since, ip).Scan(&byEmail, &byIP); err != nil {
		return Session{}, Principal{}, fmt.Errorf("count sign-in failures: %w", err)
	}
	if byEmail >= MaxFailuresPerEmail || byIP >= MaxFailuresPerIP {
		return Session{}, Principal{}, apperr.TooMany(MsgTooManyAttempts)
	}

	var userID, hash string
	err = s.db.Read().QueryRowContext(ctx, `SELECT id, password_hash FROM users WHERE email = $1`, email).Scan(&userID, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		hash = dummyHash
	} else if err != nil {
		return Session{}, Principal{}, fmt.Errorf("find user: %w", err)
	}
	ok, err := checkPassword(hash, password)
	if err != nil {
		return Session{}, Principal{}, fmt.Errorf("check password: %w", err)
	}
	if !ok || userID == "" {
		if _, err := s.db.Write().ExecContext(ctx, `INSERT INTO signin_failures (email, ip, at) VALUES ($1, $2, $3)`, email, ip, now); err != nil {
			return Session{}, Principal{}, fmt.Errorf("record sign-in failure: %w", err)
		}
		return Session{}, Principal{}, apperr.Unauthorized(MsgBadCredentials)
	}

	sess := Session{Token: newToken("tjs_"), ExpiresAt: now.Add(SessionTTL)}
	var p Principal
	err = s.db.InTx(ctx, func(tx db.Querier) error {
		var err error
		if p, err = s.principal(ctx, tx, userID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM signin_failures WHERE email = $1`, email); err != nil {
			return fmt.Errorf("clear sign-in failures: %w", err)
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO sessions (token_hash, user_id, created_at, last_seen_at, expires_at, user_agent, ip)
			VALUES ($1, $2, $3, $3, $4, $5, $6)`, hashToken(sess.Token), userID, now, sess.ExpiresAt, truncate(userAgent, 300), ip)
		if err != nil {
			return fmt.Errorf("insert session: %w", err)
		}
		return nil
	})
	if err != nil {
		return Session{}, Principal{}, err
	}
	p.Via = "session"
	return sess, p, nil
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
	return p, nil
}

// SignOut ends the session.
func (s *Service) SignOut(ctx context.Context, token string) error {
	if _, err := s.db.Write().ExecContext(ctx, `DELETE FROM sessions WHERE token_hash = $1`, hashToken(token)); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// Prune deletes expired sessions and sign-in failures older than the
// window. The server runs it periodically.
func (s *Service) Prune(ctx context.Context) (int64, error) {
	now := s.now()
	var total int64
	for _, q := range []struct {
		sql string
		arg time.Time
	}{
		{`DELETE FROM sessions WHERE expires_at <= $1`, now},
		{`DELETE FROM signin_failures WHERE at <= $1`, now.Add(-SigninWindow)},
	} {
		res, err := s.db.Write().ExecContext(ctx, q.sql, q.arg)
		if err != nil {
			return total, fmt.Errorf("prune: %w", err)
		}
		n, _ := res.RowsAffected()
		total += n
	}
	return total, nil
}
