package account

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"

	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
)

const workspaceCols = `id, account_id, name, slug, created_at`

func scanWorkspace(row interface{ Scan(...any) error }) (Workspace, error) {
	var w Workspace
	if err := row.Scan(&w.ID, &w.AccountID, &w.Name, &w.Slug, &w.CreatedAt); err != nil {
		return Workspace{}, err
	}
	w.CreatedAt = w.CreatedAt.UTC()
	return w, nil
}

// Workspaces lists the workspaces the principal can see: every workspace of
// the account for staff, their own for a client.
func (s *Service) Workspaces(ctx context.Context, p Principal) ([]Workspace, error) {
	query := `SELECT ` + workspaceCols + ` FROM workspaces WHERE account_id = $1 ORDER BY name, slug`
	args := []any{p.AccountID}
	if p.IsClient() {
		query = `SELECT ` + workspaceCols + ` FROM workspaces WHERE id = $1`
		args = []any{p.WorkspaceID}
	}
	rows, err := s.db.Read().QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list workspaces: %w", err)
	}
	defer rows.Close()
	var out []Workspace
	for rows.Next() {
		w, err := scanWorkspace(rows)
		if err != nil {
			return nil, fmt.Errorf("scan workspace: %w", err)
		}
		out = append(out, w)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list workspaces: %w", err)
	}
	return out, nil
}

// WorkspaceBySlug returns the principal's workspace with this slug. A slug of
// another account, or another client's workspace, is not found.
func (s *Service) WorkspaceBySlug(ctx context.Context, p Principal, slug string) (Workspace, error) {
	return s.visibleWorkspace(ctx, p, "slug", slug)
}

// WorkspaceByID returns the principal's workspace with this id.
func (s *Service) WorkspaceByID(ctx context.Context, p Principal, id string) (Workspace, error) {
	return s.visibleWorkspace(ctx, p, "id", id)
}

// visibleWorkspace looks a workspace up by column (a constant, never user
// input) within the principal's account, and within their own workspace
// for a client.
func (s *Service) visibleWorkspace(ctx context.Context, p Principal, column, value string) (Workspace, error) {
	w, err := scanWorkspace(s.db.Read().QueryRowContext(ctx,
		`SELECT `+workspaceCols+` FROM workspaces WHERE account_id = $1 AND `+column+` = $2`, p.AccountID, value))
	if errors.Is(err, sql.ErrNoRows) {
		return Workspace{}, apperr.ErrNotFound
	}
	if err != nil {
		return Workspace{}, fmt.Errorf("read workspace: %w", err)
	}
	if p.IsClient() && w.ID != p.WorkspaceID {
		return Workspace{}, apperr.ErrNotFound
	}
	return w, nil
}

// CheckSlug reports whether slug could name a new workspace in the
// principal's account: nil when it is available, otherwise the error a
// person would see on submitting it.
func (s *Service) CheckSlug(ctx context.Context, p Principal, slug string) error {
	if err := ValidateSlug(slug); err != nil {
		return err
	}
	err := exists(ctx, s.db.Read(), `SELECT 1 FROM workspaces WHERE account_id = $1 AND slug = $2`, p.AccountID, slug)
	switch {
	case err == nil:
		return apperr.Conflict("slug_taken", "slug", MsgSlugTaken)
	case apperr.IsNotFound(err):
		return nil
	default:
		return err
	}
}

// CreateWorkspace creates a workspace in the principal's account. It needs
// manageWorkspaces (owner or admin).
func (s *Service) CreateWorkspace(ctx context.Context, p Principal, name, slug string) (Workspace, error) {
	if !p.Can(CapManageWorkspaces) {
		return Workspace{}, apperr.Forbidden("Only account owners and admins can create workspaces")
	}
	return s.createWorkspace(ctx, p.AccountID, name, slug)
}

// CreateWorkspaceForAccount is CreateWorkspace for trusted server code (the
// demo, admin commands), which acts without a signed-in person.
func (s *Service) CreateWorkspaceForAccount(ctx context.Context, accountID, name, slug string) (Workspace, error) {
	return s.createWorkspace(ctx, accountID, name, slug)
}

// workspaceFields checks a workspace's name and slug, reporting every
// field's problem at once, name first, and returns them trimmed.
func workspaceFields(name, slug string) (string, string, error) {
	var errs []error
	if err := ValidateName(name); err != nil {
		errs = append(errs, err)
	}
	slug = strings.TrimSpace(slug)
	if err := ValidateSlug(slug); err != nil {
		errs = append(errs, err)
	}
	return strings.TrimSpace(name), slug, errors.Join(errs...)
}

func (s *Service) createWorkspace(ctx context.Context, accountID, name, slug string) (Workspace, error) {
	name, slug, err := workspaceFields(name, slug)
	if err != nil {
		return Workspace{}, err
	}
	w := Workspace{ID: db.NewID(), AccountID: accountID, Name: name, Slug: slug, CreatedAt: s.now()}
	_, err = s.db.Write().ExecContext(ctx, `INSERT INTO workspaces (`+workspaceCols+`) VALUES ($1, $2, $3, $4, $5)`,
		w.ID, w.AccountID, w.Name, w.Slug, w.CreatedAt)
	if db.IsUniqueViolation(err) {
		return Workspace{}, apperr.Conflict("slug_taken", "slug", MsgSlugTaken)
	}
	if err != nil {
		return Workspace{}, fmt.Errorf("insert workspace: %w", err)
	}
	return w, nil
}

// Members lists who has access to the workspace: the account's staff (who
// act as admins in every workspace) and the workspace's clients.
func (s *Service) Members(ctx context.Context, p Principal, w Workspace) ([]Member, error) {
	if p.AccountID != w.AccountID || !p.Role.IsStaff() {
		return nil, apperr.ErrNotFound
	}
	rows, err := s.db.Read().QueryContext(ctx, `
		SELECT u.id, u.email, u.name, u.created_at, m.role, m.created_at
		FROM account_members m JOIN users u ON u.id = m.user_id WHERE m.account_id = $1
		UNION ALL
		SELECT u.id, u.email, u.name, u.created_at, $2, c.created_at
		FROM workspace_clients c JOIN users u ON u.id = c.user_id WHERE c.workspace_id = $3`,
		w.AccountID, string(RoleClient), w.ID)
	if err != nil {
		return nil, fmt.Errorf("list members: %w", err)
	}
	out, err := scanMembers(rows)
	if err != nil {
		return nil, err
	}
	sortMembers(out)
	return out, nil
}

// sortMembers puts the owner first, then admins, members and clients, each
// by name.
func sortMembers(ms []Member) {
	sort.SliceStable(ms, func(i, j int) bool {
		if ri, rj := ms[i].Role.Rank(), ms[j].Role.Rank(); ri != rj {
			return ri > rj
		}
		return strings.ToLower(ms[i].User.Name) < strings.ToLower(ms[j].User.Name)
	})
}
