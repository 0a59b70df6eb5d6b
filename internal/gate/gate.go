// Package gate builds the publish gate's checks of a workflow: what the
// editor, the workflow pages and the JSON API all ask before a version goes
// live, so they report the same findings with the same messages.
package gate

import (
	"context"

	"taskjuice/internal/account"
	"taskjuice/internal/agent"
	"taskjuice/internal/catalog"
	"taskjuice/internal/connection"
	"taskjuice/internal/expr"
	"taskjuice/internal/llm"
	"taskjuice/internal/portal"
	"taskjuice/internal/trigger"
	"taskjuice/internal/workflow"
)

// Deps are what the checks read. Models and Portal may be nil.
type Deps struct {
	Catalog     *catalog.Catalog
	Connections *connection.Service
	Workflows   *workflow.Service
	Models      *llm.Service
	Portal      *portal.Service
}

// Checks is what the publish gate asks of the rest of TaskJuice for one
// workflow of a workspace: the catalog, the workspace's connections and
// workflows, and where its client-provided nodes stand. Lookups that fail
// leave their check out; the gate then reports what it can (a missing
// connection reads as not found, a client node as not connected).
func (d Deps) Checks(ctx context.Context, ws account.Workspace, workflowID string) workflow.Checks {
	c := workflow.Checks{Apps: d.Catalog, Expressions: expr.CompileJSON, Cron: trigger.ValidateCron, AppTrigger: canPollOrListen}
	if lookup, err := d.Connections.Lookup(ctx, ws); err == nil {
		c.Connection = lookup
	}
	if hosts, err := d.Connections.HostCheck(ctx, ws, d.Catalog); err == nil {
		c.ConnectionHost = hosts
	}
	// A Call Workflow step may run a workflow or an agent.
	wfs, err := d.Workflows.List(ctx, ws)
	if err == nil {
		agents, aerr := d.Workflows.ListAgents(ctx, ws)
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
	if d.Models != nil {
		if m, err := agent.ModelCheck(ctx, d.Models, ws.ID); err == nil {
			c.Model = m
		}
	}
	if workflowID != "" {
		bound, err := d.Workflows.ClientBindings(ctx, workflowID)
		states := map[string]portal.NodeState{}
		if err == nil && d.Portal != nil {
			states, err = d.Portal.NodeStates(ctx, ws, workflowID)
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
