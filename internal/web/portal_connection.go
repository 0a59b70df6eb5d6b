package web

import (
	"context"
	"net/http"
	"net/url"
	"strings"

	"taskjuice/internal/account"
	"taskjuice/internal/connection"
	"taskjuice/internal/workflow"
)

// The client's connection detail screen: one of their own connections,
// what state it is in and why in words a client understands, the
// workflows it serves, the two ways to mend it and its recent history.

func portalConnectionURL(id string) string { return "/portal/connections/" + url.PathEscape(id) }

type portalConnectionData struct {
	Row       connectionRow
	Why       string   // the state in plain words, derived from the status
	Workflows []string // published workflows that use it
	History   []portalEvent
}

type portalEvent struct {
	connection.Event
	What, By string
}

// portalHistoryLen is how many recent changes the screen lists.
const portalHistoryLen = 10

func (h *Handler) portalConnection(w http.ResponseWriter, r *http.Request, p account.Principal) {
	c, ok := h.ownConnection(w, r, p)
	if !ok {
		return
	}
	v, ok := h.clientView(w, r, p, "portal-connections")
	if !ok {
		return
	}
	ctx := r.Context()
	hist, err := h.Connections.History(ctx, *v.Workspace, c.ID)
	if err != nil {
		h.errorPage(w, r, &p, err)
		return
	}
	wfs, err := h.publishedUses(ctx, *v.Workspace)
	if err != nil {
		h.errorPage(w, r, &p, err)
		return
	}
	row := connectionRow{Connection: c, AppName: h.appName(c.AppKey)}
	d := portalConnectionData{Row: row, Why: plainState(row), Workflows: wfs[c.ID]}
	for i := len(hist) - 1; i >= 0 && len(d.History) < portalHistoryLen; i-- {
		d.History = append(d.History, portalEvent{Event: hist[i], What: plainEvent(hist[i], row.AppName), By: plainActor(hist[i], p)})
	}
	v.Title, v.Data = c.Label+" · Connections", d
	h.render(w, r, http.StatusOK, "portal_connection", v)
}

// plainState says what the connection's status means for the client, from
// its current status alone.
func plainState(c connectionRow) string {
	when := c.StatusChangedAt.UTC().Format("2 Jan 2006 15:04 UTC")
	switch c.Status {
	case connection.StatusActive:
		return "TaskJuice can reach " + c.AppName + " with this connection, and your automations that use it run normally."
	case connection.StatusError:
		return "Since " + when + ", " + c.AppName + " no longer accepts this connection: the access you gave was withdrawn or has expired (this happens when access is removed in " + c.AppName + ", a password changes, or a permission runs out). Automations that need it are on hold, nothing is lost. Try “Refresh credential” first; if that does not help, reconnect by signing in to " + c.AppName + " again."
	case connection.StatusRevoked:
		return "Since " + when + ", access through this connection has been withdrawn on purpose. Automations that need it cannot use it until you reconnect."
	case connection.StatusPending:
		return "Signing in to " + c.AppName + " was started but not finished."
	}
	return ""
}

// plainEvent says what one change of the history means.
func plainEvent(e connection.Event, app string) string {
	switch e.To {
	case connection.StatusActive:
		if e.From == "" || e.From == connection.StatusPending {
			return "Connected"
		}
		if e.From == connection.StatusActive {
			return "Access renewed"
		}
		return "Reconnected"
	case connection.StatusError:
		return app + " stopped accepting the connection"
	case connection.StatusRevoked:
		return "Access withdrawn"
	case connection.StatusPending:
		return "Sign-in started"
	}
	return strings.TrimSpace(string(e.To))
}

func plainActor(e connection.Event, p account.Principal) string {
	switch {
	case e.ActorKind == connection.ActorSystem:
		return "TaskJuice"
	case e.ActorUserID == p.User.ID:
		return "You"
	case e.ActorKind == connection.ActorClient:
		return "Someone from your team"
	}
	return p.AccountName
}

// publishedUses maps each connection to the workflows of the workspace
// that use it: those whose live version names it, and those a client
// bound it to (a workflow not live yet says so).
func (h *Handler) publishedUses(ctx context.Context, ws account.Workspace) (map[string][]string, error) {
	wfs, err := h.Workflows.List(ctx, ws)
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, wf := range wfs {
		if wf.Status == workflow.StatusArchived {
			continue
		}
		ids, err := h.connectionsOf(ctx, wf)
		if err != nil {
			return nil, err
		}
		name := wf.Name
		if wf.Status != workflow.StatusPublished {
			name += " (not live yet)"
		}
		for _, id := range ids {
			out[id] = append(out[id], name)
		}
	}
	return out, nil
}

// connectionsOf lists, once each, the connections a workflow uses: those
// its live version names and those its clients bound.
func (h *Handler) connectionsOf(ctx context.Context, wf workflow.Workflow) ([]string, error) {
	bound, err := h.Workflows.ClientBindings(ctx, wf.ID)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var ids []string
	add := func(id string) {
		if id != "" && !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	if wf.Status == workflow.StatusPublished {
		live, ok, err := h.Workflows.Live(ctx, wf.ID)
		if err != nil {
			return nil, err
		}
		for _, n := range live.Graph.Nodes {
			if ok && n.Connection != nil && !n.Connection.ClientProvides {
				add(n.Connection.ID)
			}
		}
	}
	for _, id := range bound {
		add(id)
	}
	return ids, nil
}
