package account

import (
	"context"
	"fmt"
	"strings"
	"time"

	"taskjuice/internal/db"
)

// The audit log: each entry is written in the transaction of the action it
// records (or right after a refused sign-in), with the actor, the address
// the request came from, the action, its target and a short detail; never a
// secret.

// Audit actions.
const (
	AuditSignIn            = "signin.success"
	AuditSignInFailed      = "signin.failure"
	AuditMFAFailed         = "signin.mfa_failure"
	AuditInvite            = "teammate.invited"
	AuditInviteResent      = "teammate.invitation_resent"
	AuditInviteRevoked     = "teammate.invitation_revoked"
	AuditRoleChanged       = "teammate.role_changed"
	AuditTeammateRemoved   = "teammate.removed"
	AuditOwnerTransferred  = "account.ownership_transferred"
	AuditTokenCreated      = "api_token.created"
	AuditTokenRevoked      = "api_token.revoked"
	AuditStaffTokenRevoked = "api_token.revoked_by_admin"
	// A connection's changes made by a person (staff or a client).
	AuditConnectionCreated     = "connection.created"
	AuditConnectionConnected   = "connection.connected" // its first consent completed
	AuditConnectionReconnected = "connection.reconnected"
	AuditConnectionRevoked     = "connection.revoked"
	AuditConnectionDomains     = "connection.allowed_domains_changed"
	AuditConnectionChanged     = "connection.changed"
	AuditConnectionRefreshed   = "connection.refreshed" // by hand
	AuditWorkflowPublished     = "workflow.published"
	AuditWorkflowDeactivated   = "workflow.deactivated"
	AuditSpendCapChanged       = "spend_cap.changed"
)

// AuditEntry is one line of the audit log.
type AuditEntry struct {
	ID         string    `json:"id"`
	At         time.Time `json:"at"`
	ActorID    string    `json:"actorId,omitempty"`
	ActorEmail string    `json:"actorEmail,omitempty"`
	Address    string    `json:"address,omitempty"`
	Action     string    `json:"action"`
	Target     string    `json:"target,omitempty"`
	Detail     string    `json:"detail,omitempty"`
}

type addrKey struct{}

type actorKey struct{}

// WithActor returns ctx carrying the signed-in person a request acts for,
// so the parts of the product that record their actions (a workflow's
// publication, a spend cap) know whose they are.
func WithActor(ctx context.Context, userID string) context.Context {
	return context.WithValue(ctx, actorKey{}, userID)
}

// ActorOf is the person ctx acts for ("" for the system's own work).
func ActorOf(ctx context.Context) string {
	a, _ := ctx.Value(actorKey{}).(string)
	return a
}

// AuditByActor writes, within q, an entry for an action in a workspace by
// the person ctx acts for; the system's own work is not recorded.
func AuditByActor(ctx context.Context, q db.Querier, at time.Time, workspaceID, action, target, detail string) error {
	actor := ActorOf(ctx)
	if actor == "" {
		return nil
	}
	return WriteWorkspaceAudit(ctx, q, at, workspaceID, actor, action, target, detail)
}

// WithAddress returns ctx carrying the address a request came from, for
// the audit entries the request writes.
func WithAddress(ctx context.Context, addr string) context.Context {
	return context.WithValue(ctx, addrKey{}, addr)
}

func addressOf(ctx context.Context) string {
	a, _ := ctx.Value(addrKey{}).(string)
	return a
}

// audit writes an entry for the account, by the principal (or by the
// actor named when nobody is signed in yet), within q.
func (s *Service) audit(ctx context.Context, q db.Querier, accountID, actorID, actorEmail, action, target, detail string) error {
	_, err := q.ExecContext(ctx, `INSERT INTO audit_log (id, account_id, at, actor_id, actor_email, address, action, target, detail)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		db.NewID(), accountID, s.now(), actorID, actorEmail, addressOf(ctx), action, target, detail)
	if err != nil {
		return fmt.Errorf("write audit entry: %w", err)
	}
	return nil
}

// auditBy writes an entry by the principal p.
func (s *Service) auditBy(ctx context.Context, q db.Querier, p Principal, action, target, detail string) error {
	return s.audit(ctx, q, p.AccountID, p.User.ID, p.User.Email, action, target, detail)
}

// AuditFilter narrows the audit log: an action (or a prefix of one ending
// in "."), an actor's email, a time range; Before pages.
type AuditFilter struct {
	Action, Actor string
	From, To      time.Time
	Before        string
	Limit         int
}

// AuditLog lists the account's entries, newest first (owners and admins).
func (s *Service) AuditLog(ctx context.Context, p Principal, f AuditFilter) ([]AuditEntry, error) {
	if err := teamAdmin(p); err != nil {
		return nil, err
	}
	if f.Limit <= 0 || f.Limit > 200 {
		f.Limit = 100
	}
	where, args := []string{"account_id = $1"}, []any{p.AccountID}
	arg := func(v any) string { args = append(args, v); return fmt.Sprintf("$%d", len(args)) }
	if a := strings.TrimSpace(f.Action); a != "" {
		if strings.HasSuffix(a, ".") {
			where = append(where, "action LIKE "+arg(strings.ReplaceAll(a, "%", "")+"%"))
		} else {
			where = append(where, "action = "+arg(a))
		}
	}
	if a := strings.TrimSpace(f.Actor); a != "" {
		where = append(where, "actor_email = "+arg(strings.ToLower(a)))
	}
	if !f.From.IsZero() {
		where = append(where, "at >= "+arg(f.From))
	}
	if !f.To.IsZero() {
		where = append(where, "at < "+arg(f.To))
	}
	if f.Before != "" {
		c := arg(f.Before)
		where = append(where, "(at, id) < ((SELECT b.at FROM audit_log b WHERE b.id = "+c+"), "+c+")")
	}
	rows, err := s.db.Read().QueryContext(ctx, `SELECT id, at, actor_id, actor_email, address, action, target, detail FROM audit_log
		WHERE `+strings.Join(where, " AND ")+` ORDER BY at DESC, id DESC LIMIT `+arg(f.Limit), args...)
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	defer rows.Close()
	var out []AuditEntry
	for rows.Next() {
		var e AuditEntry
		if err := rows.Scan(&e.ID, &e.At, &e.ActorID, &e.ActorEmail, &e.Address, &e.Action, &e.Target, &e.Detail); err != nil {
			return nil, fmt.Errorf("scan audit entry: %w", err)
		}
		e.At = e.At.UTC()
		out = append(out, e)
	}
	return out, rows.Err()
}

// WriteWorkspaceAudit writes an entry, within q, for an action another
// part of the product records (a connection's change, say) in a workspace,
// by the user actorID, in the log of the workspace's account.
func WriteWorkspaceAudit(ctx context.Context, q db.Querier, at time.Time, workspaceID, actorID, action, target, detail string) error {
	_, err := q.ExecContext(ctx, `INSERT INTO audit_log (id, account_id, at, actor_id, actor_email, address, action, target, detail)
		SELECT $1, w.account_id, $2, $3, COALESCE((SELECT email FROM users WHERE id = $3), ''), $4, $5, $6, $7 FROM workspaces w WHERE w.id = $8`,
		db.NewID(), at, actorID, addressOf(ctx), action, target, detail, workspaceID)
	if err != nil {
		return fmt.Errorf("write audit entry: %w", err)
	}
	return nil
}

// pruneAudit deletes each account's audit entries older than its
// retention.
func (s *Service) pruneAudit(ctx context.Context, now time.Time) (int64, error) {
	rows, err := s.db.Read().QueryContext(ctx, `SELECT id, audit_retention_days FROM accounts`)
	if err != nil {
		return 0, fmt.Errorf("read audit retention: %w", err)
	}
	keep := map[string]int{}
	for rows.Next() {
		var id string
		var days int
		if err := rows.Scan(&id, &days); err != nil {
			rows.Close()
			return 0, fmt.Errorf("scan audit retention: %w", err)
		}
		keep[id] = days
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	var total int64
	for id, days := range keep {
		res, err := s.db.Write().ExecContext(ctx, `DELETE FROM audit_log WHERE account_id = $1 AND at < $2`, id, now.AddDate(0, 0, -days))
		if err != nil {
			return total, fmt.Errorf("prune audit log: %w", err)
		}
		n, _ := res.RowsAffected()
		total += n
	}
	return total, nil
}
