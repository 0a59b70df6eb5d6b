package account

import (
	"context"
	"fmt"
	"strings"

	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
)

// Audit actions of data leaving the product.
const (
	AuditWorkspaceDeleted = "workspace.deleted"
	AuditAccountExported  = "account.exported"
)

// WorkspaceContents is what deleting a workspace removes, for the
// confirmation that names it.
type WorkspaceContents struct {
	Workflows   int `json:"workflows"`
	Agents      int `json:"agents"`
	Connections int `json:"connections"` // not yet revoked: each is revoked at its app first
	Runs        int `json:"runs"`
	Clients     int `json:"clients"`
}

// Summary says the contents in words.
func (c WorkspaceContents) Summary() string {
	n := func(k int, one, many string) string {
		if k == 1 {
			return "1 " + one
		}
		return fmt.Sprintf("%d %s", k, many)
	}
	return strings.Join([]string{n(c.Workflows, "workflow", "workflows"), n(c.Agents, "agent", "agents"),
		n(c.Connections, "connection", "connections"), n(c.Runs, "run", "runs"), n(c.Clients, "client sign-in", "client sign-ins")}, ", ")
}

// Contents counts what the workspace holds (owners and admins).
func (s *Service) Contents(ctx context.Context, p Principal, w Workspace) (WorkspaceContents, error) {
	if err := workspaceAdmin(p, w); err != nil {
		return WorkspaceContents{}, err
	}
	var c WorkspaceContents
	err := s.db.Read().QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM workflows WHERE workspace_id = $1 AND type = 'workflow'),
		(SELECT count(*) FROM workflows WHERE workspace_id = $1 AND type = 'agent'),
		(SELECT count(*) FROM connections WHERE workspace_id = $1 AND status <> 'revoked'),
		(SELECT count(*) FROM runs WHERE workspace_id = $1),
		(SELECT count(*) FROM workspace_clients WHERE workspace_id = $1)`, w.ID).
		Scan(&c.Workflows, &c.Agents, &c.Connections, &c.Runs, &c.Clients)
	if err != nil {
		return WorkspaceContents{}, fmt.Errorf("count the workspace's contents: %w", err)
	}
	return c, nil
}

// workspaceAdmin lets the account's owners and admins act on one of its
// workspaces; anyone else does not see it.
func workspaceAdmin(p Principal, w Workspace) error {
	if !p.Role.IsStaff() || p.AccountID != w.AccountID {
		return apperr.ErrNotFound
	}
	if !p.Can(CapManageWorkspaces) {
		return errAdminRequired
	}
	return nil
}

// ConfirmWorkspace checks that confirm is the workspace's address, typed
// to delete it.
func ConfirmWorkspace(w Workspace, confirm string) error {
	if strings.TrimSpace(confirm) != w.Slug {
		return invalid("confirm", fmt.Sprintf("Type the workspace's address, %s, to confirm", w.Slug))
	}
	return nil
}

// DeleteWorkspace removes the workspace with everything in it (its
// workflows, runs, connections and clients' sign-ins) in one transaction,
// recording it in the audit log with what it held (c, counted before the
// caller revoked its connections at their apps).
func (s *Service) DeleteWorkspace(ctx context.Context, p Principal, w Workspace, confirm string, c WorkspaceContents) error {
	if err := workspaceAdmin(p, w); err != nil {
		return err
	}
	if err := ConfirmWorkspace(w, confirm); err != nil {
		return err
	}
	return s.db.InTx(ctx, func(tx db.Querier) error {
		if err := s.auditBy(ctx, tx, p, AuditWorkspaceDeleted, w.Name+" ("+w.Slug+")", c.Summary()); err != nil {
			return err
		}
		// A client belongs to one workspace: their sign-in goes with it.
		if _, err := tx.ExecContext(ctx, `DELETE FROM users WHERE id IN (SELECT user_id FROM workspace_clients WHERE workspace_id = $1)`, w.ID); err != nil {
			return fmt.Errorf("delete the workspace's clients: %w", err)
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM workspaces WHERE id = $1 AND account_id = $2`, w.ID, p.AccountID)
		if err != nil {
			return fmt.Errorf("delete workspace: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return apperr.ErrNotFound
		}
		return nil
	})
}

// ConfirmAccount checks that confirm is the account's name, typed to
// delete it.
func ConfirmAccount(a Account, confirm string) error {
	if strings.TrimSpace(confirm) != a.Name {
		return invalid("confirm", fmt.Sprintf("Type the account's name, %s, to confirm", a.Name))
	}
	return nil
}

// MayDeleteAccount lets the account's owner through.
func MayDeleteAccount(p Principal) error {
	if !p.Role.IsStaff() {
		return apperr.ErrNotFound
	}
	if !p.Can(CapDeleteAccount) {
		return apperr.Forbidden("Only the account's owner can delete it")
	}
	return nil
}

// DeleteAccount removes the account with every workspace, staff member
// and client sign-in (the owner only). The caller revokes its connections
// at their apps first.
func (s *Service) DeleteAccount(ctx context.Context, p Principal, confirm string) error {
	if err := MayDeleteAccount(p); err != nil {
		return err
	}
	a, err := s.Account(ctx, p.AccountID)
	if err != nil {
		return err
	}
	if err := ConfirmAccount(a, confirm); err != nil {
		return err
	}
	return s.db.InTx(ctx, func(tx db.Querier) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM users WHERE id IN (SELECT user_id FROM account_members WHERE account_id = $1)
			OR id IN (SELECT c.user_id FROM workspace_clients c JOIN workspaces w ON w.id = c.workspace_id WHERE w.account_id = $1)`, p.AccountID)
		if err != nil {
			return fmt.Errorf("delete the account's people: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM accounts WHERE id = $1`, p.AccountID); err != nil {
			return fmt.Errorf("delete account: %w", err)
		}
		return nil
	})
}

// RecordExport writes the audit entry of an export of the account's data.
func (s *Service) RecordExport(ctx context.Context, p Principal, detail string) error {
	return s.auditBy(ctx, s.db.Write(), p, AuditAccountExported, p.AccountName, detail)
}
