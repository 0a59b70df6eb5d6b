package web

import (
	"context"

	"taskjuice/internal/account"
	"taskjuice/internal/gate"
	"taskjuice/internal/workflow"
)

// workflowChecks is the publish gate's checks of one workflow, the same the
// JSON API uses (see package gate).
func (h *Handler) workflowChecks(ctx context.Context, ws account.Workspace, workflowID string) workflow.Checks {
	return gate.Deps{Catalog: h.Catalog, Connections: h.Connections, Workflows: h.Workflows, Models: h.Models, Portal: h.Portal}.Checks(ctx, ws, workflowID)
}
