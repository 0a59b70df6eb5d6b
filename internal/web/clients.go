package web

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"time"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
	"taskjuice/internal/connection"
	"taskjuice/internal/engine"
	"taskjuice/internal/portal"
	"taskjuice/internal/workflow"
)

// Client-owned connections, staff side: the editor's slot for a node whose
// client provides the connection, the workspace's request queue and the
// requests sent with their progress.

// clientSlot is what a client-provided node's card says about it.
type clientSlot struct {
	Provided   bool // the node's saved source is the client
	AppName    string
	Queued     bool
	Sent       bool
	Connection *connOption // the connection the client bound, once they did
}

func (h *Handler) fillClientSlot(c *stepCard, states map[string]portal.NodeState, bound map[string]string, conns []connection.Connection) {
	b := c.Node.Connection
	if c.Node.Kind != workflow.NodeAction || b == nil || !b.ClientProvides || c.App == nil {
		return
	}
	c.Client = clientSlotOf(c.Node.ID, c.App.Name, states, bound, conns)
}

// fillTriggerClientSlot is fillClientSlot for an app trigger whose client
// provides the connection.
func (h *Handler) fillTriggerClientSlot(t *triggerCard, states map[string]portal.NodeState, bound map[string]string, conns []connection.Connection) {
	b := t.Node.Connection
	if t.Kind != string(workflow.TriggerApp) || b == nil || !b.ClientProvides || t.App.Chosen == nil || t.App.Connection != "client" {
		return
	}
	t.App.Client = clientSlotOf(t.Node.ID, t.App.Chosen.Name, states, bound, conns)
}

func clientSlotOf(nodeID, appName string, states map[string]portal.NodeState, bound map[string]string, conns []connection.Connection) clientSlot {
	st := states[nodeID]
	s := clientSlot{Provided: true, AppName: appName, Queued: st.Queued, Sent: st.Sent}
	if id := bound[nodeID]; id != "" {
		for _, cn := range conns {
			if cn.ID == id {
				s.Connection = &connOption{ID: cn.ID, Label: cn.Label, Status: cn.Status}
			}
		}
	}
	return s
}

// queueClientRequest is "Add to client request queue" on a step: it queues
// a request and sends nothing.
func (h *Handler) queueClientRequest(w http.ResponseWriter, r *http.Request, v view) {
	wf, ok := h.loadWorkflow(w, r, v)
	if !ok {
		return
	}
	node := r.PathValue("node")
	if _, err := h.Portal.Queue(r.Context(), *v.P, *v.Workspace, wf.ID, node); err != nil {
		h.refuse(w, r, v.P, h.editorURL(v, wf.ID)+"#step-"+url.PathEscape(node), err)
		return
	}
	setFlash(w, "request-queued")
	redirect(w, r, "/"+v.Workspace.Slug+"/workflows/"+wf.ID+"/edit#step-"+url.PathEscape(node))
}

type requestsData struct {
	Queue   []portal.Request
	Clients []account.User
	Sent    []batchRow
	Note    string
	Error   string
	Names   map[string]string // workflow names by id
}

type batchRow struct {
	portal.Batch
	Connected, Total int
	Expired          bool
}

func (h *Handler) clientRequests(w http.ResponseWriter, r *http.Request, v view) {
	k, _ := keptForm(r)
	h.renderRequests(w, r, v, http.StatusOK, k.Values["note"], k.Error)
}

func (h *Handler) renderRequests(w http.ResponseWriter, r *http.Request, v view, status int, note, msg string) {
	ctx := r.Context()
	q, err := h.Portal.Queued(ctx, *v.Workspace)
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	clients, err := h.accounts.Clients(ctx, *v.P, *v.Workspace)
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	sent, err := h.Portal.Sent(ctx, *v.P, *v.Workspace)
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	wfs, err := h.Workflows.List(ctx, *v.Workspace)
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	d := requestsData{Queue: q, Clients: clients, Note: note, Error: msg, Names: map[string]string{}}
	for _, wf := range wfs {
		d.Names[wf.ID] = wf.Name
	}
	now := h.nowTime()
	for _, b := range sent {
		x, y := b.Progress()
		d.Sent = append(d.Sent, batchRow{Batch: b, Connected: x, Total: y, Expired: b.Expired(now)})
	}
	v.Title, v.Data = "Client requests · "+v.Workspace.Name, d
	h.render(w, r, status, "requests", v)
}

func (h *Handler) dispatchClientRequests(w http.ResponseWriter, r *http.Request, v view) {
	if err := r.ParseForm(); err != nil {
		h.errorPage(w, r, v.P, errBadForm)
		return
	}
	note := r.PostForm.Get("note")
	if !h.EmailOn() {
		h.dispatchByLink(w, r, v, note)
		return
	}
	if _, err := h.Portal.Dispatch(r.Context(), *v.P, *v.Workspace, r.PostForm.Get("client"), note); err != nil {
		h.refuseForm(w, r, v.P, "/"+v.Workspace.Slug+"/clients/requests", err, map[string]string{"note": note})
		return
	}
	setFlash(w, "requests-sent")
	redirect(w, r, "/"+v.Workspace.Slug+"/clients/requests")
}

func (h *Handler) resendClientRequest(w http.ResponseWriter, r *http.Request, v view) {
	if !h.EmailOn() {
		h.resendRequestByLink(w, r, v)
		return
	}
	if _, err := h.Portal.Resend(r.Context(), *v.P, *v.Workspace, r.PathValue("id")); err != nil {
		h.refuse(w, r, v.P, "/"+v.Workspace.Slug+"/clients/requests", err)
		return
	}
	setFlash(w, "request-resent")
	redirect(w, r, "/"+v.Workspace.Slug+"/clients/requests")
}

func (h *Handler) unqueueClientRequest(w http.ResponseWriter, r *http.Request, v view) {
	if err := h.Portal.Unqueue(r.Context(), *v.P, *v.Workspace, r.PathValue("id")); err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	redirect(w, r, "/"+v.Workspace.Slug+"/clients/requests")
}

// requestReconnect asks the client who owns a connection to reconnect it,
// by a fresh request email.
func (h *Handler) requestReconnect(w http.ResponseWriter, r *http.Request, v view) {
	if !h.EmailOn() {
		h.requestReconnectByLink(w, r, v)
		return
	}
	if _, err := h.Portal.RequestReconnect(r.Context(), *v.P, *v.Workspace, r.PathValue("id"), ""); err != nil {
		h.refuse(w, r, v.P, h.connectionURL(v, r.PathValue("id")), apperr.Explain(err, "There is no such connection in this workspace."))
		return
	}
	setFlash(w, "reconnect-requested")
	redirect(w, r, "/"+v.Workspace.Slug+"/connections/"+r.PathValue("id"))
}

// ---- the portal: the client's side ----

// clientView is the view of a portal page: the client's own workspace.
func (h *Handler) clientView(w http.ResponseWriter, r *http.Request, p account.Principal, section string) (view, bool) {
	ws, err := h.accounts.WorkspaceByID(r.Context(), p, p.WorkspaceID)
	if err != nil {
		h.errorPage(w, r, &p, err)
		return view{}, false
	}
	return view{Title: ws.Name, P: &p, Workspace: &ws, Section: section}, true
}

type portalData struct {
	Workflows   []portalWorkflow
	Runs        []engine.RunRow
	Connections []connection.Connection
	Requests    []batchRow
	// SupportEmail is where the agency takes its clients' questions.
	SupportEmail string
}

type portalWorkflow struct {
	workflow.Workflow
	Apps []string
}

// portal is the client's home: the workflows published for them, their
// runs, the connections those workflows depend on, and pending requests.
// Read-only: nothing here edits anything.
func (h *Handler) portal(w http.ResponseWriter, r *http.Request, p account.Principal) {
	v, ok := h.clientView(w, r, p, "portal")
	if !ok {
		return
	}
	ctx := r.Context()
	wfs, err := h.Workflows.List(ctx, *v.Workspace)
	if err != nil {
		h.errorPage(w, r, &p, err)
		return
	}
	var d portalData
	used := map[string]bool{}
	for _, wf := range wfs {
		if wf.Status != workflow.StatusPublished {
			continue
		}
		pw := portalWorkflow{Workflow: wf}
		if live, ok, err := h.Workflows.Live(ctx, wf.ID); err == nil && ok {
			bound, _ := h.Workflows.ClientBindings(ctx, wf.ID)
			seen := map[string]bool{}
			for _, n := range live.Graph.Nodes {
				if n.Connection == nil {
					continue
				}
				id := n.Connection.ID
				if n.Connection.ClientProvides {
					id = bound[n.ID]
				}
				if id != "" {
					used[id] = true
				}
				if cfg, err := workflow.DecodeConfig(n); err == nil {
					if a, ok := cfg.(*workflow.ActionConfig); ok && !seen[a.App] {
						seen[a.App] = true
						pw.Apps = append(pw.Apps, h.appName(a.App))
					}
				}
			}
		}
		d.Workflows = append(d.Workflows, pw)
	}
	conns, err := h.Connections.List(ctx, *v.Workspace, "")
	if err != nil {
		h.errorPage(w, r, &p, err)
		return
	}
	for _, c := range conns {
		if used[c.ID] || (c.OwnerKind == connection.OwnerClient && c.OwnerUserID == p.User.ID) {
			d.Connections = append(d.Connections, c)
		}
	}
	if h.Engine != nil {
		runs, err := h.Engine.List(ctx, v.Workspace.ID, engine.ListFilter{Limit: 20})
		if err != nil {
			h.errorPage(w, r, &p, err)
			return
		}
		published := map[string]bool{}
		for _, wf := range d.Workflows {
			published[wf.ID] = true
		}
		for _, run := range runs {
			if published[run.WorkflowID] {
				d.Runs = append(d.Runs, run)
			}
		}
	}
	if d.Requests, err = h.pendingRequests(ctx, p); err != nil {
		h.errorPage(w, r, &p, err)
		return
	}
	a, err := h.accounts.Account(ctx, p.AccountID)
	if err != nil {
		h.errorPage(w, r, &p, err)
		return
	}
	d.SupportEmail = a.SupportEmail
	v.Data = d
	h.render(w, r, http.StatusOK, "portal", v)
}

// pendingRequests are the client's requests still in their inbox with an
// app left to connect.
func (h *Handler) pendingRequests(ctx context.Context, p account.Principal) ([]batchRow, error) {
	inbox, err := h.Portal.Inbox(ctx, p)
	if err != nil {
		return nil, err
	}
	now := h.nowTime()
	var out []batchRow
	for _, b := range inbox {
		if b.Expired(now) || b.Done() {
			continue
		}
		x, y := b.Progress()
		out = append(out, batchRow{Batch: b, Connected: x, Total: y})
	}
	return out, nil
}

type portalConnectionsData struct {
	Connections []connectionRow
	Requests    []batchRow
	Error       string
}

func (h *Handler) portalConnections(w http.ResponseWriter, r *http.Request, p account.Principal) {
	h.renderPortalConnections(w, r, p, http.StatusOK, "")
}

func (h *Handler) renderPortalConnections(w http.ResponseWriter, r *http.Request, p account.Principal, status int, msg string) {
	v, ok := h.clientView(w, r, p, "portal-connections")
	if !ok {
		return
	}
	ctx := r.Context()
	conns, err := h.Connections.List(ctx, *v.Workspace, "")
	if err != nil {
		h.errorPage(w, r, &p, err)
		return
	}
	d := portalConnectionsData{Error: msg}
	for _, c := range conns {
		if c.OwnerKind == connection.OwnerClient && c.OwnerUserID == p.User.ID && c.Status != connection.StatusPending {
			d.Connections = append(d.Connections, connectionRow{Connection: c, AppName: h.appName(c.AppKey)})
		}
	}
	if d.Requests, err = h.pendingRequests(ctx, p); err != nil {
		h.errorPage(w, r, &p, err)
		return
	}
	v.Title, v.Data = "Connections · "+v.Workspace.Name, d
	h.render(w, r, status, "portal_connections", v)
}

// ownConnection loads one of the client's own connections; any other is
// not found.
func (h *Handler) ownConnection(w http.ResponseWriter, r *http.Request, p account.Principal) (connection.Connection, bool) {
	ws, err := h.accounts.WorkspaceByID(r.Context(), p, p.WorkspaceID)
	if err == nil {
		var c connection.Connection
		c, err = h.Connections.Get(r.Context(), ws, r.PathValue("id"))
		if err == nil && c.OwnerKind == connection.OwnerClient && c.OwnerUserID == p.User.ID {
			return c, true
		}
	}
	h.errorPage(w, r, &p, apperr.NotFound("There is no such connection among yours."))
	return connection.Connection{}, false
}

// portalRefresh is Refresh credential: it re-runs the token refresh.
func (h *Handler) portalRefresh(w http.ResponseWriter, r *http.Request, p account.Principal) {
	c, ok := h.ownConnection(w, r, p)
	if !ok {
		return
	}
	if err := h.Refresher.Refresh(r.Context(), c.ID); err != nil {
		h.refuse(w, r, &p, portalConnectionURL(c.ID), err)
		return
	}
	setFlash(w, "refreshed")
	redirect(w, r, portalConnectionURL(c.ID))
}

// portalReconnect emails the client a fresh request to reconnect, through
// the app's consent screen.
func (h *Handler) portalReconnect(w http.ResponseWriter, r *http.Request, p account.Principal) {
	c, ok := h.ownConnection(w, r, p)
	if !ok {
		return
	}
	if !h.EmailOn() {
		h.portalReconnectNow(w, r, p, c)
		return
	}
	if _, err := h.Portal.ReconnectByEmail(r.Context(), p, c.ID); err != nil {
		h.refuse(w, r, &p, portalConnectionURL(c.ID), err)
		return
	}
	setFlash(w, "reconnect-emailed")
	redirect(w, r, portalConnectionURL(c.ID))
}

type portalRequestData struct {
	Batch             portal.Batch
	Connected, Total  int
	Expired           bool
	Next              string // the request to connect next
	Agency, Workspace string
}

// portalRequest is the request page: one app at a time through its
// consent screen, with the progress.
func (h *Handler) portalRequest(w http.ResponseWriter, r *http.Request, p account.Principal) {
	v, ok := h.clientView(w, r, p, "portal-connections")
	if !ok {
		return
	}
	b, err := h.Portal.ForClient(r.Context(), p, r.PathValue("id"))
	if err != nil {
		h.errorPage(w, r, &p, err)
		return
	}
	d := portalRequestData{Batch: b, Expired: b.Expired(h.nowTime()), Agency: p.AccountName, Workspace: v.Workspace.Name}
	d.Connected, d.Total = b.Progress()
	if d.Expired && !b.Done() {
		h.errorPage(w, r, &p, portal.ErrInboxExpired)
		return
	}
	for _, rq := range b.Requests {
		if !rq.Connected() {
			d.Next = rq.ID
			break
		}
	}
	v.Title, v.Data = "Connect apps · "+v.Workspace.Name, d
	h.render(w, r, http.StatusOK, "portal_request", v)
}

// portalConnect starts the consent of one app of a request.
func (h *Handler) portalConnect(w http.ResponseWriter, r *http.Request, p account.Principal) {
	b, rq, err := h.Portal.ToConnect(r.Context(), p, r.PathValue("id"), r.PathValue("request"))
	if err != nil {
		h.errorPage(w, r, &p, err)
		return
	}
	h.startClientConsent(w, r, p, b, rq)
}

// startClientConsent sends the client to the consent screen of a request's
// app, the request page to come back to.
func (h *Handler) startClientConsent(w http.ResponseWriter, r *http.Request, p account.Principal, b portal.Batch, rq portal.Request) {
	ws, err := h.accounts.WorkspaceByID(r.Context(), p, p.WorkspaceID)
	if err != nil {
		h.errorPage(w, r, &p, err)
		return
	}
	app, ok := h.Catalog.App(rq.AppKey)
	if !ok || !app.IsOAuth() {
		h.errorPage(w, r, &p, apperr.Conflict("not_oauth", "", "This app cannot be connected from the portal"))
		return
	}
	cfg, err := connection.OAuthConfig(app, h.callbackURL())
	if err != nil {
		h.errorPage(w, r, &p, apperr.BadRequest("app_not_configured", err.Error()))
		return
	}
	// Consent again for a connection this request already started (or, for
	// a reconnect, the client's connection): same id, nothing left behind.
	reconnectID := ""
	opts := connection.AuthCodeOptions(app)
	if rq.ConnectionID != "" {
		if c, err := h.Connections.Get(r.Context(), ws, rq.ConnectionID); err == nil && c.OwnerUserID == p.User.ID {
			reconnectID = c.ID
			// Ask for the account the connection was made with.
			prev, err := h.madeWith(r.Context(), ws, c)
			if err != nil {
				h.errorPage(w, r, &p, err)
				return
			}
			opts = append(opts, loginHint(prev)...)
		}
	}
	authURL, c, err := h.Connections.BeginConsent(r.Context(), cfg, connection.ConsentRequest{
		Workspace: ws, AppKey: app.Key, Label: app.Name, ReconnectID: reconnectID,
		Actor: h.actor(&p), SessionBinding: authnBinding(r), ReturnTo: "/portal/requests/" + b.ID,
		OwnerKind: connection.OwnerClient,
	}, opts...)
	if err != nil {
		h.errorPage(w, r, &p, err)
		return
	}
	if err := h.Portal.Started(r.Context(), rq.ID, c.ID); err != nil {
		h.errorPage(w, r, &p, err)
		return
	}
	http.Redirect(w, r, authURL, http.StatusSeeOther)
}

// portalLink is where a request email's sign-in link leads: it signs the
// client in (once) and shows the request. A browser signed in as someone
// else is refused, and so is an unknown, used or expired link; the refusal
// page offers nothing.
func (h *Handler) portalLink(w http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	if p, err := h.auth.Session(r); err == nil {
		owner, perr := h.Portal.PeekLink(r.Context(), token)
		switch {
		case perr != nil:
			h.errorPage(w, r, &p, perr)
			return
		case owner != p.User.ID:
			h.errorPage(w, r, &p, portal.ErrLinkForeign)
			return
		}
	}
	b, err := h.Portal.OpenLink(r.Context(), token)
	if err != nil {
		h.errorPage(w, r, nil, err)
		return
	}
	sess, _, err := h.accounts.OpenSession(r.Context(), b.ClientUserID, h.auth.ClientIP(r), r.UserAgent())
	if err != nil {
		h.errorPage(w, r, nil, err)
		return
	}
	h.auth.SetSession(w, r, sess)
	redirect(w, r, "/portal/requests/"+b.ID)
}

// clientConsentDone is told of a consent a client completed: the requests
// it answers flip to connected and bind their nodes. It reports where to
// send the client.
func (h *Handler) clientConsentDone(ctx context.Context, c connection.Connection) error {
	if h.Portal == nil || c.OwnerKind != connection.OwnerClient {
		return nil
	}
	return h.Portal.Connected(ctx, c.ID)
}

func isPortalPath(p string) bool { return p == "/portal" || strings.HasPrefix(p, "/portal/") }

func (h *Handler) nowTime() time.Time { return time.Now() }

// portalNotFound answers a portal address nothing serves.
func (h *Handler) portalNotFound(w http.ResponseWriter, r *http.Request, p account.Principal) {
	h.errorPage(w, r, &p, apperr.NotFound("There is no page at this address."))
}
