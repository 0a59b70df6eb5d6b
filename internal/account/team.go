package account

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
	"taskjuice/internal/mail"
)

// The agency's team: teammates (the account's staff) are invited by email
// with a role, Admin or Member, and owners and admins change their roles or
// remove them. A removed teammate's sessions and API tokens end at once.

var (
	errTeamInvitationNotFound = apperr.NotFound("There is no such pending teammate invitation.")
	errTeammateNotFound       = apperr.NotFound("There is no such teammate in this account.")
	errTeamInvitationPending  = apperr.Conflict("invitation_pending", "email", "This email already has a pending invitation; resend it instead")
)

// teamAdmin lets owners and admins through: another staff member is
// refused, anyone else does not see the team at all.
func teamAdmin(p Principal) error {
	if !p.Role.IsStaff() {
		return apperr.ErrNotFound
	}
	if !p.Can(CapInviteTeammate) {
		return errAdminRequired
	}
	return nil
}

// teammateRole reads the role a teammate may be given: Admin or Member
// (the default); ownership is only transferred.
func teammateRole(role string) (Role, error) {
	switch Role(strings.TrimSpace(role)) {
	case "", RoleMember:
		return RoleMember, nil
	case RoleAdmin:
		return RoleAdmin, nil
	}
	return "", invalid("role", "Role must be account-admin or account-member; ownership is transferred, not given")
}

// InviteTeammate invites a person to the agency's staff with a role and
// queues the invitation's email in the same transaction (its link is
// minted when it is sent). With byEmail false (email is off) nothing is
// queued and the sign-up token is returned for staff to hand over.
func (s *Service) InviteTeammate(ctx context.Context, p Principal, email, role string, byEmail bool) (Invitation, string, error) {
	if err := teamAdmin(p); err != nil {
		return Invitation{}, "", err
	}
	r, err := teammateRole(role)
	if err != nil {
		return Invitation{}, "", err
	}
	email, err = NormalizeEmail(email)
	if err != nil {
		return Invitation{}, "", err
	}
	now := s.now()
	inv := Invitation{ID: db.NewID(), Email: email, Role: r, CreatedAt: now, ExpiresAt: now.Add(InvitationTTL)}
	token, err := s.recordInvitation(ctx, p, inv, pendingInvitation{`account_id = $1 AND workspace_id IS NULL`, p.AccountID, errTeamInvitationPending}, byEmail,
		teammateEmail(email, p.AccountName, p.User.Name, r, inv.ExpiresAt),
		func(tx db.Querier) error { return s.auditBy(ctx, tx, p, AuditInvite, email, "role "+string(r)) })
	if err != nil {
		return Invitation{}, "", err
	}
	return inv, token, nil
}

func teammateEmail(to, agency, inviter string, role Role, expires time.Time) mail.Message {
	as := "a member"
	if role == RoleAdmin {
		as = "an admin"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Hello,\n\n%s invites you to join %s on TaskJuice as %s of the team.\n\n", inviter, agency, as)
	invitationFooter(&b, expires)
	return mail.Message{To: to, Subject: inviter + " invites you to " + agency + " on TaskJuice", Text: b.String()}
}

// TeamInvitations lists the account's pending teammate invitations, newest
// first (expired ones too, until they are resent or revoked).
func (s *Service) TeamInvitations(ctx context.Context, p Principal) ([]Invitation, error) {
	if err := teamAdmin(p); err != nil {
		return nil, err
	}
	rows, err := s.db.Read().QueryContext(ctx, `SELECT id, email, role, created_at, expires_at FROM invitations
		WHERE account_id = $1 AND workspace_id IS NULL AND accepted_at IS NULL AND revoked_at IS NULL
		ORDER BY created_at DESC, id DESC`, p.AccountID)
	if err != nil {
		return nil, fmt.Errorf("list teammate invitations: %w", err)
	}
	defer rows.Close()
	var out []Invitation
	for rows.Next() {
		var inv Invitation
		var role string
		if err := rows.Scan(&inv.ID, &inv.Email, &role, &inv.CreatedAt, &inv.ExpiresAt); err != nil {
			return nil, fmt.Errorf("scan invitation: %w", err)
		}
		inv.Role, inv.CreatedAt, inv.ExpiresAt = Role(role), inv.CreatedAt.UTC(), inv.ExpiresAt.UTC()
		out = append(out, inv)
	}
	return out, rows.Err()
}

// ResendTeamInvitation sends a pending (or expired) teammate invitation
// again with a new link valid for InvitationTTL; the previous link stops
// working at once. With byEmail false the new token is returned instead.
func (s *Service) ResendTeamInvitation(ctx context.Context, p Principal, id string, byEmail bool) (Invitation, string, error) {
	if err := teamAdmin(p); err != nil {
		return Invitation{}, "", err
	}
	inv, token, err := s.renewInvitation(ctx, `account_id = $2 AND workspace_id IS NULL`, []any{id, p.AccountID}, errTeamInvitationNotFound, byEmail,
		func(inv Invitation) mail.Message {
			return teammateEmail(inv.Email, p.AccountName, p.User.Name, inv.Role, inv.ExpiresAt)
		})
	if err != nil {
		return inv, token, err
	}
	return inv, token, s.auditBy(ctx, s.db.Write(), p, AuditInviteResent, inv.Email, "")
}

// RevokeTeamInvitation withdraws a pending teammate invitation: its link
// stops working and an email not yet sent is dropped.
func (s *Service) RevokeTeamInvitation(ctx context.Context, p Principal, id string) error {
	if err := teamAdmin(p); err != nil {
		return err
	}
	return s.db.InTx(ctx, func(tx db.Querier) error {
		var email string
		err := tx.QueryRowContext(ctx, `UPDATE invitations SET revoked_at = $1
			WHERE id = $2 AND account_id = $3 AND workspace_id IS NULL AND accepted_at IS NULL AND revoked_at IS NULL RETURNING email`,
			s.now(), id, p.AccountID).Scan(&email)
		if errors.Is(err, sql.ErrNoRows) {
			return errTeamInvitationNotFound
		}
		if err != nil {
			return fmt.Errorf("revoke invitation: %w", err)
		}
		return s.auditBy(ctx, tx, p, AuditInviteRevoked, email, "")
	})
}

// teammate checks that an owner or admin may act on another teammate of
// the account, not the owner, and returns the teammate's role.
func (s *Service) teammate(ctx context.Context, q db.Querier, p Principal, userID string) (Role, error) {
	if err := teamAdmin(p); err != nil {
		return "", err
	}
	var role string
	err := q.QueryRowContext(ctx, `SELECT role FROM account_members WHERE account_id = $1 AND user_id = $2`, p.AccountID, userID).Scan(&role)
	if errors.Is(err, sql.ErrNoRows) {
		return "", errTeammateNotFound
	}
	if err != nil {
		return "", fmt.Errorf("read teammate: %w", err)
	}
	switch {
	case userID == p.User.ID:
		return "", apperr.Forbidden("You cannot change your own role or remove yourself; ask another admin or the owner")
	case Role(role) == RoleOwner:
		return "", apperr.Forbidden("The owner's role changes only by transferring ownership")
	}
	return Role(role), nil
}

// ChangeRole makes a teammate an Admin or a Member.
func (s *Service) ChangeRole(ctx context.Context, p Principal, userID, role string) error {
	r, err := teammateRole(role)
	if err != nil {
		return err
	}
	return s.db.InTx(ctx, func(tx db.Querier) error {
		old, err := s.teammate(ctx, tx, p, userID)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE account_members SET role = $1 WHERE account_id = $2 AND user_id = $3`, string(r), p.AccountID, userID); err != nil {
			return fmt.Errorf("change role: %w", err)
		}
		return s.auditBy(ctx, tx, p, AuditRoleChanged, s.emailOf(ctx, tx, userID), string(old)+" → "+string(r))
	})
}

// RemoveTeammate takes a teammate off the account: in one transaction their
// membership goes, their sessions end and their API tokens are revoked, so
// nothing they held works a moment later.
func (s *Service) RemoveTeammate(ctx context.Context, p Principal, userID string) error {
	now := s.now()
	return s.db.InTx(ctx, func(tx db.Querier) error {
		if _, err := s.teammate(ctx, tx, p, userID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE user_id = $1`, userID); err != nil {
			return fmt.Errorf("end teammate's sessions: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE user_id = $2`, now, userID); err != nil {
			return fmt.Errorf("revoke teammate's API tokens: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM account_members WHERE account_id = $1 AND user_id = $2`, p.AccountID, userID); err != nil {
			return fmt.Errorf("remove teammate: %w", err)
		}
		return s.auditBy(ctx, tx, p, AuditTeammateRemoved, s.emailOf(ctx, tx, userID), "sessions ended, API tokens revoked")
	})
}

// emailOf is a user's email, for an audit entry's target (their id when it
// cannot be read).
func (s *Service) emailOf(ctx context.Context, q db.Querier, userID string) string {
	var email string
	if err := q.QueryRowContext(ctx, `SELECT email FROM users WHERE id = $1`, userID).Scan(&email); err != nil {
		return userID
	}
	return email
}
