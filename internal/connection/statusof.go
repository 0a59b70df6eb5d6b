package connection

import (
	"context"
	"fmt"
)

// StatusOf reads a connection's status whatever its workspace: for server
// work (a polling trigger deciding whether it may call the app), never for
// a request. A missing connection is apperr.ErrNotFound.
func (s *Service) StatusOf(ctx context.Context, id string) (Status, error) {
	c, err := s.byID(ctx, id)
	if err != nil {
		return "", err
	}
	return c.Status, nil
}

// ExternalAccountOf reads the id of the external account a connection's
// credential belongs to (Slack: the team id), whatever its workspace: for
// server work such as routing an app's deliveries, never for a request.
func (s *Service) ExternalAccountOf(ctx context.Context, id string) (string, error) {
	c, err := s.byID(ctx, id)
	if err != nil {
		return "", err
	}
	return c.ExternalAccountID, nil
}

// StatusCount is how many connections of a workspace have one status.
type StatusCount struct {
	WorkspaceID string
	Status      Status
	Connections int64
}

// CountByStatus counts every workspace's connections by status, for the
// metrics (a range of connections_workspace).
func (s *Service) CountByStatus(ctx context.Context) ([]StatusCount, error) {
	rows, err := s.db.Read().QueryContext(ctx, `SELECT workspace_id, status, COUNT(*) FROM connections GROUP BY workspace_id, status`)
	if err != nil {
		return nil, fmt.Errorf("count connections: %w", err)
	}
	defer rows.Close()
	var out []StatusCount
	for rows.Next() {
		var c StatusCount
		if err := rows.Scan(&c.WorkspaceID, &c.Status, &c.Connections); err != nil {
			return nil, fmt.Errorf("count connections: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// ByID reads a connection whatever its workspace: for server work (posting
// an alert through it), never for a request; callers check the workspace.
func (s *Service) ByID(ctx context.Context, id string) (Connection, error) {
	return s.byID(ctx, id)
}
