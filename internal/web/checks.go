package web

import (
	"context"

	"taskjuice/internal/account"
	"taskjuice/internal/agent"
	"taskjuice/internal/expr"
	"taskjuice/internal/portal"
	"taskjuice/internal/trigger"
	"taskjuice/internal/workflow"
)

// workflowChecks is what the publish gate asks of the rest of TaskJuice for
// one workflow of a workspace: the catalog, the workspace's connections and
// workflows, and where its client-provided nodes stand. Lookups that fail
// leave their check out; the gate then reports what it can (a missing
// connection reads as not found, a client node as not connected).
func (h *Handler) workflowChecks(ctx context.Context, ws account.Workspace, workflowID string) workflow.Checks {
	c := workflow.Checks{Apps: h.Catalog, Expressions: expr.CompileJSON, Cron: trigger.ValidateCron, AppTrigger: canPollOrListen}
	if lookup, err := h.Connections.Lookup(ctx, ws); err == nil {
		c.Connection = lookup
	}
	if hosts, err := h.Connections.HostCheck(ctx, ws, h.Catalog); err == nil {
		c.ConnectionHost = hosts
	}
	// A Call Workflow step may run a workflow or an agent.
	wfs, err := h.Workflows.List(ctx, ws)
	if err == nil {
		agents, aerr := h.Workflows.ListAgents(ctx, ws)
		wfs = append(wfs, agents...)
		err = aerr
	}
	if err == nil {
		published := map[string]bool{}
		for _, w := range wfs {
			published[w.ID] = w.Status == workflow.StatusPublished
		}
		c.Workflow = func(id string) bool { return published[id] }
	}
	if h.Models != nil {
		if m, err := agent.ModelCheck(ctx, h.Models, ws.ID); err == nil {
			c.Model = m
		}
	}
	if workflowID != "" {
		bound, err := h.Workflows.ClientBindings(ctx, workflowID)
		states := map[string]portal.NodeState{}
		if err == nil && h.Portal != nil {
			states, err = h.Portal.NodeStates(ctx, ws, workflowID)
		}
		if err == nil {
			c.ClientNode = func(node string) (string, bool) { return bound[node], states[node].Sent }
		}
	}
	return c
}

// canPollOrListen accepts the app triggers TaskJuice can poll or listen to.
func canPollOrListen(app, key string) bool {
	return trigger.CanPoll(app, key) || trigger.CanListen(app, key)
}
