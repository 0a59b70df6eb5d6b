package workflow

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"taskjuice/internal/db"
)

// A node whose source is "Client provides the connection" names no
// connection in the graph: the client connects the app later, from their
// portal. The connection they provide is bound to the node for the whole
// workflow — every version, and every run whatever version it started on —
// and resolved when the node runs. Binding changes no version, so nothing
// is republished by itself.

// BindClientConnection binds the connection a client provided to a node of
// the workflow, replacing an earlier one.
// q is the caller's transaction, or nil for a write of its own.
func (s *Service) BindClientConnection(ctx context.Context, q db.Querier, workflowID, nodeID, connectionID string) error {
	if q == nil {
		q = s.db.Write()
	}
	_, err := q.ExecContext(ctx, `INSERT INTO workflow_client_connections (workflow_id, node_id, connection_id, bound_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (workflow_id, node_id) DO UPDATE SET connection_id = excluded.connection_id, bound_at = excluded.bound_at`,
		workflowID, nodeID, connectionID, s.now())
	if err != nil {
		return fmt.Errorf("bind client connection: %w", err)
	}
	return nil
}

// ClientConnection returns the connection bound to a client-provided node,
// for the engine; ok is false while the client has not connected it.
func (s *Service) ClientConnection(ctx context.Context, workflowID, nodeID string) (string, bool, error) {
	var id string
	err := s.db.Read().QueryRowContext(ctx, `SELECT connection_id FROM workflow_client_connections WHERE workflow_id = $1 AND node_id = $2`,
		workflowID, nodeID).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read client connection: %w", err)
	}
	return id, true, nil
}

// ClientBindings returns the connection bound to each client-provided node
// of the workflow, by node id.
func (s *Service) ClientBindings(ctx context.Context, workflowID string) (map[string]string, error) {
	rows, err := s.db.Read().QueryContext(ctx, `SELECT node_id, connection_id FROM workflow_client_connections WHERE workflow_id = $1`, workflowID)
	if err != nil {
		return nil, fmt.Errorf("read client connections: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var node, conn string
		if err := rows.Scan(&node, &conn); err != nil {
			return nil, fmt.Errorf("read client connections: %w", err)
		}
		out[node] = conn
	}
	return out, rows.Err()
}
