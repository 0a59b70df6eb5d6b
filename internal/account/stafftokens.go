package account

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
)

// StaffToken is a staff member's API token, as an owner or admin sees it.
type StaffToken struct {
	APIToken
	OwnerEmail string `json:"ownerEmail"`
	OwnerName  string `json:"ownerName"`
}

// MsgTenantAdmin refuses what only owners and admins may do.
const MsgTenantAdmin = "Tenant admin required"

// StaffTokens lists the API tokens of every staff member of the
// principal's account, newest first: owners and admins only.
func (s *Service) StaffTokens(ctx context.Context, p Principal) ([]StaffToken, error) {
	if !p.Can(CapInviteTeammate) {
		return nil, apperr.Forbidden(MsgTenantAdmin)
	}
	rows, err := s.db.Read().QueryContext(ctx, `SELECT t.id, t.name, t.prefix, t.created_at, t.last_used_at, t.revoked_at, u.email, u.name
		FROM api_tokens t JOIN users u ON u.id = t.user_id JOIN account_members m ON m.user_id = t.user_id
		WHERE m.account_id = $1 ORDER BY t.created_at DESC, t.id DESC`, p.AccountID)
	if err != nil {
		return nil, fmt.Errorf("list staff tokens: %w", err)
	}
	defer rows.Close()
	var out []StaffToken
	for rows.Next() {
		var t StaffToken
		var used, revoked sql.NullTime
		if err := rows.Scan(&t.ID, &t.Name, &t.Prefix, &t.CreatedAt, &used, &revoked, &t.OwnerEmail, &t.OwnerName); err != nil {
			return nil, fmt.Errorf("list staff tokens: %w", err)
		}
		t.CreatedAt, t.LastUsedAt, t.RevokedAt = t.CreatedAt.UTC(), nullTime(used), nullTime(revoked)
		out = append(out, t)
	}
	return out, rows.Err()
}

// RevokeStaffToken revokes the API token of a staff member of the
// principal's account: owners and admins only. Another account's token is
// not found.
func (s *Service) RevokeStaffToken(ctx context.Context, p Principal, id string) error {
	if !p.Can(CapInviteTeammate) {
		return apperr.Forbidden(MsgTenantAdmin)
	}
	return s.db.InTx(ctx, func(tx db.Querier) error {
		var prefix, name, owner string
		err := tx.QueryRowContext(ctx, `UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $1)
			WHERE id = $2 AND user_id IN (SELECT user_id FROM account_members WHERE account_id = $3) RETURNING prefix, name, user_id`,
			s.now(), id, p.AccountID).Scan(&prefix, &name, &owner)
		if errors.Is(err, sql.ErrNoRows) {
			return apperr.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("revoke staff token: %w", err)
		}
		return s.auditBy(ctx, tx, p, AuditStaffTokenRevoked, prefix+"…", name+" of "+s.emailOf(ctx, tx, owner))
	})
}
