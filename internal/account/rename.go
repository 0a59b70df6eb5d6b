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

// SlugRedirectFor is how long a renamed workspace's earlier address
// redirects to its current one.
const SlugRedirectFor = 90 * 24 * time.Hour

// RenameWorkspace gives a workspace a new name and, when slug differs, a
// new address; the old address redirects for SlugRedirectFor. It needs
// manageWorkspaces (owner or admin). Every field's problem is reported at
// once; nothing changes then.
func (s *Service) RenameWorkspace(ctx context.Context, p Principal, w Workspace, name, slug string) (Workspace, error) {
	if !p.Role.IsStaff() || p.AccountID != w.AccountID {
		return Workspace{}, apperr.ErrNotFound
	}
	if !p.Can(CapManageWorkspaces) {
		return Workspace{}, errAdminRequired
	}
	name, slug, err := workspaceFields(name, slug)
	if err != nil {
		return Workspace{}, err
	}
	now := s.now()
	out := w
	out.Name, out.Slug = name, slug
	err = s.db.InTx(ctx, func(tx db.Querier) error {
		res, err := tx.ExecContext(ctx, `UPDATE workspaces SET name = $1, slug = $2 WHERE id = $3 AND account_id = $4`, name, slug, w.ID, w.AccountID)
		if db.IsUniqueViolation(err) {
			return apperr.Conflict("slug_taken", "slug", MsgSlugTaken)
		}
		if err != nil {
			return fmt.Errorf("rename workspace: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return apperr.ErrNotFound
		}
		if slug == w.Slug {
			return nil
		}
		// The new address is no one's old one any more; the old one
		// redirects here.
		if _, err := tx.ExecContext(ctx, `DELETE FROM workspace_slug_history WHERE account_id = $1 AND slug IN ($2, $3)`, w.AccountID, slug, w.Slug); err != nil {
			return fmt.Errorf("record old address: %w", err)
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO workspace_slug_history (account_id, slug, workspace_id, retired_at) VALUES ($1, $2, $3, $4)`,
			w.AccountID, w.Slug, w.ID, now)
		if err != nil {
			return fmt.Errorf("record old address: %w", err)
		}
		return nil
	})
	if err != nil {
		return Workspace{}, err
	}
	return out, nil
}

// MovedWorkspace returns the workspace that had slug as its address until
// less than SlugRedirectFor ago, for a page asked for at its old address.
func (s *Service) MovedWorkspace(ctx context.Context, p Principal, slug string) (Workspace, error) {
	var id string
	err := s.db.Read().QueryRowContext(ctx, `SELECT h.workspace_id FROM workspace_slug_history h
		WHERE h.account_id = $1 AND h.slug = $2 AND h.retired_at > $3
		AND NOT EXISTS (SELECT 1 FROM workspaces w WHERE w.account_id = h.account_id AND w.slug = h.slug)`,
		p.AccountID, slug, s.now().Add(-SlugRedirectFor)).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return Workspace{}, apperr.ErrNotFound
	}
	if err != nil {
		return Workspace{}, fmt.Errorf("read old address: %w", err)
	}
	return s.WorkspaceByID(ctx, p, id)
}
