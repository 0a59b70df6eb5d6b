package account

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
)

// InvitationTTL is how long an emailed invitation link works.
const InvitationTTL = 7 * 24 * time.Hour

// CreateInvitation records an invitation and returns its secret token (for
// the emailed link; only its hash is stored). A workspace-client invitation
// names the workspace; a staff invitation does not.
func (s *Service) CreateInvitation(ctx context.Context, p Principal, email string, role Role, workspaceID string) (string, Invitation, error) {
	switch {
	case role == RoleClient:
		if !p.Can(CapWrite) || !p.Role.IsStaff() {
			return "", Invitation{}, apperr.Forbidden("Only staff can invite clients")
		}
		if _, err := s.WorkspaceByID(ctx, p, workspaceID); err != nil {
			return "", Invitation{}, err
		}
	case role == RoleAdmin || role == RoleMember:
		if !p.Can(CapInviteTeammate) {
			return "", Invitation{}, errAdminRequired
		}
		workspaceID = ""
	default:
		return "", Invitation{}, invalid("role", "Role must be account-admin, account-member or workspace-client")
	}
	email, err := NormalizeEmail(email)
	if err != nil {
		return "", Invitation{}, err
	}
	now := s.now()
	secret := newToken("tji_")
	inv := Invitation{ID: db.NewID(), Email: email, Role: role, WorkspaceID: workspaceID, CreatedAt: now, ExpiresAt: now.Add(InvitationTTL)}
	_, err = s.db.Write().ExecContext(ctx, `INSERT INTO invitations (id, account_id, workspace_id, email, role, token_hash, invited_by, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		inv.ID, p.AccountID, sql.NullString{String: workspaceID, Valid: workspaceID != ""}, email, string(role), hashToken(secret), p.User.ID, now, inv.ExpiresAt)
	if err != nil {
		return "", Invitation{}, fmt.Errorf("insert invitation: %w", err)
	}
	return secret, inv, nil
}

// PendingInvitations lists the invitations still open for the workspace:
// its client invitations and the account's staff invitations.
func (s *Service) PendingInvitations(ctx context.Context, p Principal, w Workspace) ([]Invitation, error) {
	if p.AccountID != w.AccountID || !p.Role.IsStaff() {
		return nil, apperr.ErrNotFound
	}
	rows, err := s.db.Read().QueryContext(ctx, `SELECT id, email, role, COALESCE(workspace_id, ''), created_at, expires_at
		FROM invitations
		WHERE account_id = $1 AND (workspace_id = $2 OR workspace_id IS NULL)
		  AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $3
		ORDER BY created_at DESC`, p.AccountID, w.ID, s.now())
	if err != nil {
		return nil, fmt.Errorf("list invitations: %w", err)
	}
	defer rows.Close()
	var out []Invitation
	for rows.Next() {
		var inv Invitation
		var role string
		if err := rows.Scan(&inv.ID, &inv.Email, &role, &inv.WorkspaceID, &inv.CreatedAt, &inv.ExpiresAt); err != nil {
			return nil, fmt.Errorf("scan invitation: %w", err)
		}
		inv.Role = Role(role)
		inv.CreatedAt, inv.ExpiresAt = inv.CreatedAt.UTC(), inv.ExpiresAt.UTC()
		out = append(out, inv)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list invitations: %w", err)
	}
	return out, nil
}
