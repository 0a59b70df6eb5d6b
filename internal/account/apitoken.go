package account

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
	"taskjuice/internal/textcheck"
)

// APITokenPrefix starts every API token, so one found in a log or a
// repository is recognisable.
const APITokenPrefix = "tjp_"

const tokenTouchEvery = time.Minute

// CreateAPIToken mints a token for the principal. The secret is returned
// once; only its hash is kept.
func (s *Service) CreateAPIToken(ctx context.Context, p Principal, name string) (string, APIToken, error) {
	if !p.Role.IsStaff() {
		return "", APIToken{}, apperr.Forbidden("Clients cannot create API tokens")
	}
	name = strings.TrimSpace(name)
	if n := utf8.RuneCountInString(name); n < 1 || n > 100 {
		return "", APIToken{}, invalid("name", "Token name must be 1–100 characters")
	}
	if err := textcheck.Line("name", "A token name", name); err != nil {
		return "", APIToken{}, err
	}
	secret := newToken(APITokenPrefix)
	t := APIToken{ID: db.NewID(), Name: name, Prefix: secret[:len(APITokenPrefix)+6], CreatedAt: s.now()}
	err := s.db.InTx(ctx, func(tx db.Querier) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO api_tokens (id, user_id, name, prefix, token_hash, created_at)
			VALUES ($1, $2, $3, $4, $5, $6)`, t.ID, p.User.ID, t.Name, t.Prefix, hashToken(secret), t.CreatedAt); err != nil {
			return fmt.Errorf("insert api token: %w", err)
		}
		return s.auditBy(ctx, tx, p, AuditTokenCreated, t.Prefix+"…", t.Name)
	})
	if err != nil {
		return "", APIToken{}, err
	}
	return secret, t, nil
}

// APITokens lists the principal's own tokens, newest first.
func (s *Service) APITokens(ctx context.Context, p Principal) ([]APIToken, error) {
	rows, err := s.db.Read().QueryContext(ctx, `SELECT id, name, prefix, created_at, last_used_at, revoked_at
		FROM api_tokens WHERE user_id = $1 ORDER BY created_at DESC, id DESC`, p.User.ID)
	if err != nil {
		return nil, fmt.Errorf("list api tokens: %w", err)
	}
	defer rows.Close()
	var out []APIToken
	for rows.Next() {
		var t APIToken
		var used, revoked sql.NullTime
		if err := rows.Scan(&t.ID, &t.Name, &t.Prefix, &t.CreatedAt, &used, &revoked); err != nil {
			return nil, fmt.Errorf("scan api token: %w", err)
		}
		t.CreatedAt, t.LastUsedAt, t.RevokedAt = t.CreatedAt.UTC(), nullTime(used), nullTime(revoked)
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list api tokens: %w", err)
	}
	return out, nil
}

// RevokeAPIToken revokes one of the principal's own tokens. Someone else's
// token is not found.
func (s *Service) RevokeAPIToken(ctx context.Context, p Principal, id string) error {
	return s.db.InTx(ctx, func(tx db.Querier) error {
		var prefix, name string
		err := tx.QueryRowContext(ctx, `UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 AND user_id = $3 RETURNING prefix, name`,
			s.now(), id, p.User.ID).Scan(&prefix, &name)
		if errors.Is(err, sql.ErrNoRows) {
			return apperr.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("revoke api token: %w", err)
		}
		return s.auditBy(ctx, tx, p, AuditTokenRevoked, prefix+"…", name)
	})
}

// TokenPrincipal returns who holds the API token. A revoked or unknown token
// is Unauthorized.
func (s *Service) TokenPrincipal(ctx context.Context, secret string) (Principal, error) {
	if !strings.HasPrefix(secret, APITokenPrefix) {
		return Principal{}, apperr.Unauthorized("Invalid API token")
	}
	h := hashToken(secret)
	var id, userID string
	var used sql.NullTime
	var revoked sql.NullTime
	err := s.db.Read().QueryRowContext(ctx, `SELECT id, user_id, last_used_at, revoked_at FROM api_tokens WHERE token_hash = $1`, h).
		Scan(&id, &userID, &used, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return Principal{}, apperr.Unauthorized("Invalid API token")
	}
	if err != nil {
		return Principal{}, fmt.Errorf("read api token: %w", err)
	}
	if revoked.Valid {
		return Principal{}, apperr.Unauthorized("This API token has been revoked")
	}
	now := s.now()
	if !used.Valid || now.Sub(used.Time) > tokenTouchEvery {
		if _, err := s.db.Write().ExecContext(ctx, `UPDATE api_tokens SET last_used_at = $1 WHERE id = $2`, now, id); err != nil {
			return Principal{}, fmt.Errorf("touch api token: %w", err)
		}
	}
	p, err := s.principal(ctx, s.db.Read(), userID)
	if err != nil {
		return Principal{}, err
	}
	p.Via = "token"
	if p.MFAHold, err = s.mfaHold(ctx, p); err != nil {
		return Principal{}, err
	}
	return p, nil
}
