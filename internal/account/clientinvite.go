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

// MailInvitation is the outbox kind of an invitation email; its link is
// minted when it is sent (InvitationExpander).
const MailInvitation = "client-invitation"

// Invitation link refusals: each a page the person can act on, and none
// tells whether an email has a sign-in.
var (
	ErrInvitationUnknown  = apperr.NotFound("This invitation link is not valid. It may have been replaced by a newer invitation; use the link in the latest email, or ask for a new one.")
	ErrInvitationExpired  = apperr.Gone("invitation_expired", "This invitation has expired. Ask whoever invited you to send a new one.")
	ErrInvitationUsed     = apperr.Gone("invitation_used", "This invitation was already used. Sign in with the email and password you chose.")
	ErrInvitationRevoked  = apperr.Gone("invitation_revoked", "This invitation was withdrawn. Ask whoever invited you if you still need access.")
	errInvitationPending  = apperr.Conflict("invitation_pending", "email", "This email already has a pending invitation to this workspace; resend it instead")
	errInvitationNotFound = apperr.NotFound("There is no such pending invitation in this workspace.")
)

// InviteClient invites a person from the client to the workspace: it
// records the invitation and queues its email, in one transaction. The
// email's sign-up link is minted when it is sent.
func (s *Service) InviteClient(ctx context.Context, p Principal, w Workspace, email string) (Invitation, error) {
	inv, _, err := s.inviteClient(ctx, p, w, email, true)
	return inv, err
}

// InviteClientByLink invites as InviteClient does on a server whose email
// is off: nothing is queued; the sign-up token is minted now and returned
// for staff to hand over themselves. Only its hash is stored, so it cannot
// be shown again; a resend mints a new one.
func (s *Service) InviteClientByLink(ctx context.Context, p Principal, w Workspace, email string) (Invitation, string, error) {
	return s.inviteClient(ctx, p, w, email, false)
}

// InvitationPath is the address of an invitation's sign-up page, under the
// server's base URL.
func InvitationPath(token string) string { return "/invitations/" + token }

func (s *Service) inviteClient(ctx context.Context, p Principal, w Workspace, email string, byEmail bool) (Invitation, string, error) {
	if !p.Role.IsStaff() || p.AccountID != w.AccountID {
		return Invitation{}, "", apperr.ErrNotFound
	}
	if !p.Can(CapWrite) {
		return Invitation{}, "", apperr.Forbidden("Only staff can invite clients")
	}
	email, err := NormalizeEmail(email)
	if err != nil {
		return Invitation{}, "", err
	}
	now := s.now()
	inv := Invitation{ID: db.NewID(), Email: email, Role: RoleClient, WorkspaceID: w.ID, CreatedAt: now, ExpiresAt: now.Add(InvitationTTL)}
	token, err := s.recordInvitation(ctx, p, inv, pendingInvitation{`workspace_id = $1`, w.ID, errInvitationPending}, byEmail,
		invitationEmail(email, p.AccountName, w.Name, p.User.Name, inv.ExpiresAt), nil)
	if err != nil {
		return Invitation{}, "", err
	}
	return inv, token, nil
}

// pendingInvitation is where a pending invitation to the same email would
// stand in the way of a new one: a condition on invitations ($1 is arg),
// and the refusal.
type pendingInvitation struct {
	scope string
	arg   any
	err   error
}

// recordInvitation records inv, unless the email already has a sign-in or
// a pending invitation within pending, runs also (the audit entry, say)
// and, by email, queues message, all in one transaction. By email the token
// is minted when the email goes out (until then the row holds the hash of
// a token nobody has) and "" is returned; otherwise the sign-up token is
// returned for staff to hand over.
func (s *Service) recordInvitation(ctx context.Context, p Principal, inv Invitation, pending pendingInvitation, byEmail bool, message mail.Message,
	also func(tx db.Querier) error) (string, error) {
	token := newToken("tji_")
	err := s.db.InTx(ctx, func(tx db.Querier) error {
		if err := exists(ctx, tx, `SELECT 1 FROM users WHERE email = $1`, inv.Email); err == nil {
			return errEmailTaken
		} else if !errors.Is(err, apperr.ErrNotFound) {
			return err
		}
		if err := exists(ctx, tx, `SELECT 1 FROM invitations WHERE `+pending.scope+` AND email = $2
			AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $3`, pending.arg, inv.Email, inv.CreatedAt); err == nil {
			return pending.err
		} else if !errors.Is(err, apperr.ErrNotFound) {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO invitations (id, account_id, workspace_id, email, role, token_hash, invited_by, created_at, expires_at, sent_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $8)`,
			inv.ID, p.AccountID, db.NullString(inv.WorkspaceID), inv.Email, string(inv.Role), hashToken(token), p.User.ID, inv.CreatedAt, inv.ExpiresAt); err != nil {
			return fmt.Errorf("insert invitation: %w", err)
		}
		if also != nil {
			if err := also(tx); err != nil {
				return err
			}
		}
		if !byEmail {
			return nil
		}
		return mail.EnqueueRef(ctx, tx, MailInvitation, inv.ID, message)
	})
	if err != nil || byEmail {
		return "", err
	}
	return token, nil
}

// invitationFooter ends an invitation email: its link and how long it works.
func invitationFooter(b *strings.Builder, expires time.Time) {
	fmt.Fprintf(b, "Choose your password to join:\n\n%s\n\n", mail.LinkPlaceholder)
	fmt.Fprintf(b, "The link works once, until %s. If you did not expect this invitation, ignore this email.\n",
		expires.UTC().Format("2 Jan 2006 15:04 UTC"))
}

func invitationEmail(to, agency, workspace, inviter string, expires time.Time) mail.Message {
	var b strings.Builder
	fmt.Fprintf(&b, "Hello,\n\n%s of %s invites you to %s on TaskJuice, where you can see the automations %s runs for you and connect the apps they need.\n\n",
		inviter, agency, workspace, agency)
	invitationFooter(&b, expires)
	return mail.Message{To: to, Subject: agency + " invites you to " + workspace + " on TaskJuice", Text: b.String()}
}

// InvitationExpander mints an invitation email's link when it is sent: a
// fresh random token whose hash replaces the invitation's, so only the
// latest email's link works. A revoked, used or expired invitation's email
// is dropped.
func (s *Service) InvitationExpander(baseURL string) mail.Expander {
	return func(ctx context.Context, ref string, m mail.Message) (mail.Message, error) {
		secret := newToken("tji_")
		res, err := s.db.Write().ExecContext(ctx, `UPDATE invitations SET token_hash = $1
			WHERE id = $2 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $3`, hashToken(secret), ref, s.now())
		if err != nil {
			return m, fmt.Errorf("mint invitation link: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return m, mail.ErrDrop
		}
		m.Text = strings.ReplaceAll(m.Text, mail.LinkPlaceholder, strings.TrimRight(baseURL, "/")+InvitationPath(secret))
		return m, nil
	}
}

// ResendInvitation sends a pending (or expired) invitation again, with a
// new link valid for InvitationTTL; the previous link stops working at once.
func (s *Service) ResendInvitation(ctx context.Context, p Principal, w Workspace, id string) (Invitation, error) {
	inv, _, err := s.resendInvitation(ctx, p, w, id, true)
	return inv, err
}

// ResendInvitationByLink renews an invitation as ResendInvitation does on a
// server whose email is off: it returns the new sign-up token instead of
// emailing it; the previous link stops working at once.
func (s *Service) ResendInvitationByLink(ctx context.Context, p Principal, w Workspace, id string) (Invitation, string, error) {
	return s.resendInvitation(ctx, p, w, id, false)
}

func (s *Service) resendInvitation(ctx context.Context, p Principal, w Workspace, id string, byEmail bool) (Invitation, string, error) {
	if !p.Role.IsStaff() || p.AccountID != w.AccountID {
		return Invitation{}, "", apperr.ErrNotFound
	}
	if !p.Can(CapWrite) {
		return Invitation{}, "", apperr.Forbidden("Only staff can invite clients")
	}
	return s.renewInvitation(ctx, `workspace_id = $2`, []any{id, w.ID}, errInvitationNotFound, byEmail, func(inv Invitation) mail.Message {
		return invitationEmail(inv.Email, p.AccountName, w.Name, p.User.Name, inv.ExpiresAt)
	})
}

// renewInvitation gives the pending invitation id, within scope (a
// condition on invitations whose parameters follow the id), a new link
// valid for InvitationTTL; the previous link stops working at once. By
// email it queues message's email, in the same transaction; otherwise it
// returns the new token.
func (s *Service) renewInvitation(ctx context.Context, scope string, args []any, notFound error, byEmail bool, message func(Invitation) mail.Message) (Invitation, string, error) {
	now := s.now()
	token := newToken("tji_")
	var inv Invitation
	err := s.db.InTx(ctx, func(tx db.Querier) error {
		var role string
		var ws sql.NullString
		err := tx.QueryRowContext(ctx, `SELECT id, email, role, workspace_id, created_at FROM invitations
			WHERE id = $1 AND `+scope+` AND accepted_at IS NULL AND revoked_at IS NULL`, args...).
			Scan(&inv.ID, &inv.Email, &role, &ws, &inv.CreatedAt)
		if errors.Is(err, sql.ErrNoRows) {
			return notFound
		}
		if err != nil {
			return fmt.Errorf("read invitation: %w", err)
		}
		inv.Role, inv.WorkspaceID, inv.ExpiresAt, inv.CreatedAt = Role(role), ws.String, now.Add(InvitationTTL), inv.CreatedAt.UTC()
		if _, err := tx.ExecContext(ctx, `UPDATE invitations SET token_hash = $1, expires_at = $2, sent_at = $3 WHERE id = $4`,
			hashToken(token), inv.ExpiresAt, now, inv.ID); err != nil {
			return fmt.Errorf("renew invitation: %w", err)
		}
		if !byEmail {
			return nil
		}
		return mail.EnqueueRef(ctx, tx, MailInvitation, inv.ID, message(inv))
	})
	if err != nil || byEmail {
		return inv, "", err
	}
	return inv, token, nil
}

// RevokeInvitation withdraws a pending invitation: its link stops working
// and an email not yet sent is dropped.
func (s *Service) RevokeInvitation(ctx context.Context, p Principal, w Workspace, id string) error {
	if !p.Role.IsStaff() || p.AccountID != w.AccountID {
		return apperr.ErrNotFound
	}
	if !p.Can(CapWrite) {
		return apperr.Forbidden("Only staff can invite clients")
	}
	res, err := s.db.Write().ExecContext(ctx, `UPDATE invitations SET revoked_at = $1
		WHERE id = $2 AND workspace_id = $3 AND accepted_at IS NULL AND revoked_at IS NULL`, s.now(), id, w.ID)
	if err != nil {
		return fmt.Errorf("revoke invitation: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errInvitationNotFound
	}
	return nil
}

// InvitationOffer is what the sign-up page shows about an invitation.
type InvitationOffer struct {
	Invitation
	AccountName   string
	WorkspaceName string
}

// InvitationByToken finds the invitation an emailed link names, refusing
// one that is unknown, used, withdrawn or expired.
func (s *Service) InvitationByToken(ctx context.Context, token string) (InvitationOffer, error) {
	return s.invitationByToken(ctx, s.db.Read(), token)
}

func (s *Service) invitationByToken(ctx context.Context, q db.Querier, token string) (InvitationOffer, error) {
	if !strings.HasPrefix(token, "tji_") {
		return InvitationOffer{}, ErrInvitationUnknown
	}
	var o InvitationOffer
	var role string
	var accepted, revoked sql.NullTime
	err := q.QueryRowContext(ctx, `SELECT i.id, i.email, i.role, COALESCE(i.workspace_id, ''), i.created_at, i.expires_at, i.accepted_at, i.revoked_at,
		a.name, COALESCE(w.name, '')
		FROM invitations i JOIN accounts a ON a.id = i.account_id LEFT JOIN workspaces w ON w.id = i.workspace_id
		WHERE i.token_hash = $1`, hashToken(token)).
		Scan(&o.ID, &o.Email, &role, &o.WorkspaceID, &o.CreatedAt, &o.ExpiresAt, &accepted, &revoked, &o.AccountName, &o.WorkspaceName)
	if errors.Is(err, sql.ErrNoRows) {
		return InvitationOffer{}, ErrInvitationUnknown
	}
	if err != nil {
		return InvitationOffer{}, fmt.Errorf("read invitation: %w", err)
	}
	o.Role, o.AcceptedAt, o.RevokedAt = Role(role), nullTime(accepted), nullTime(revoked)
	o.CreatedAt, o.ExpiresAt = o.CreatedAt.UTC(), o.ExpiresAt.UTC()
	switch {
	case o.AcceptedAt != nil:
		return InvitationOffer{}, ErrInvitationUsed
	case o.RevokedAt != nil:
		return InvitationOffer{}, ErrInvitationRevoked
	case !s.now().Before(o.ExpiresAt):
		return InvitationOffer{}, ErrInvitationExpired
	}
	return o, nil
}

// AcceptInvitation spends an invitation: it creates the person with the
// name and password they chose, as a client of the workspace (or staff of
// the account, for a staff invitation), and opens their first session.
func (s *Service) AcceptInvitation(ctx context.Context, token, name, password, ip, userAgent string) (Session, Principal, error) {
	var userID string
	err := s.db.InTx(ctx, func(tx db.Querier) error {
		o, err := s.invitationByToken(ctx, tx, token)
		if err != nil {
			return err
		}
		u := NewUser{Email: o.Email, Name: name, Password: password}
		if err := u.normalize(); err != nil {
			return err
		}
		// Spent first: of two racing submissions only one creates the person.
		res, err := tx.ExecContext(ctx, `UPDATE invitations SET accepted_at = $1 WHERE id = $2 AND accepted_at IS NULL`, s.now(), o.ID)
		if err != nil {
			return fmt.Errorf("spend invitation: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrInvitationUsed
		}
		user, err := s.insertUser(ctx, tx, u)
		if err != nil {
			return err
		}
		userID = user.ID
		if o.Role == RoleClient {
			_, err = tx.ExecContext(ctx, `INSERT INTO workspace_clients (workspace_id, user_id, created_at) VALUES ($1, $2, $3)`,
				o.WorkspaceID, user.ID, user.CreatedAt)
			if err != nil {
				return fmt.Errorf("add client: %w", err)
			}
			return nil
		}
		var accountID string
		if err := tx.QueryRowContext(ctx, `SELECT account_id FROM invitations WHERE id = $1`, o.ID).Scan(&accountID); err != nil {
			return fmt.Errorf("read invitation: %w", err)
		}
		return addStaff(ctx, tx, accountID, user.ID, o.Role, user.CreatedAt)
	})
	if err != nil {
		return Session{}, Principal{}, err
	}
	return s.OpenSession(ctx, userID, ip, userAgent)
}

// OpenSession opens a session for a person whose identity was proven some
// other way than a password: a just-accepted invitation, or a single-use
// sign-in link from an email.
func (s *Service) OpenSession(ctx context.Context, userID, ip, userAgent string) (Session, Principal, error) {
	now := s.now()
	sess := Session{Token: newToken("tjs_"), ExpiresAt: now.Add(SessionTTL)}
	var p Principal
	err := s.db.InTx(ctx, func(tx db.Querier) error {
		var err error
		if p, err = s.principal(ctx, tx, userID); err != nil {
			return err
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

// Clients lists the workspace's clients, for choosing who a request goes
// to.
func (s *Service) Clients(ctx context.Context, p Principal, w Workspace) ([]User, error) {
	if p.AccountID != w.AccountID || !p.Role.IsStaff() {
		return nil, apperr.ErrNotFound
	}
	rows, err := s.db.Read().QueryContext(ctx, `SELECT u.id, u.email, u.name, u.created_at FROM workspace_clients c JOIN users u ON u.id = c.user_id
		WHERE c.workspace_id = $1 ORDER BY u.name, u.email`, w.ID)
	if err != nil {
		return nil, fmt.Errorf("list clients: %w", err)
	}
	defer rows.Close()
	var out []User
	for rows.Next() {
		var u User
		if err := rows.Scan(&u.ID, &u.Email, &u.Name, &u.CreatedAt); err != nil {
			return nil, fmt.Errorf("scan client: %w", err)
		}
		u.CreatedAt = u.CreatedAt.UTC()
		out = append(out, u)
	}
	return out, rows.Err()
}

// UserByID reads a person (for emails to them and the pages that name
// them); callers check that the person is theirs to see.
func (s *Service) UserByID(ctx context.Context, id string) (User, error) {
	var u User
	err := s.db.Read().QueryRowContext(ctx, `SELECT id, email, name, created_at FROM users WHERE id = $1`, id).Scan(&u.ID, &u.Email, &u.Name, &u.CreatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, apperr.ErrNotFound
	}
	if err != nil {
		return User{}, fmt.Errorf("read user: %w", err)
	}
	u.CreatedAt = u.CreatedAt.UTC()
	return u, nil
}
