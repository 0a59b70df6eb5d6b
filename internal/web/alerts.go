package web

import (
	"net/http"
	"strings"

	"taskjuice/internal/notify"
)

// alertsView is the failure alerts card of a workflow's page.
type alertsView struct {
	notify.AlertSettings
	Chats []connectionRow
	// Secret is the webhook's new signing secret, shown on the page that
	// answers the change that made it, and never again.
	Secret string
}

// alertsOf reads what the card shows.
func (h *Handler) alertsOf(r *http.Request, v view, workflowID string) (*alertsView, error) {
	if h.Notify == nil {
		return nil, nil
	}
	a, err := h.Notify.Alerts(r.Context(), v.Workspace.ID, workflowID)
	if err != nil {
		return nil, err
	}
	out := &alertsView{AlertSettings: a}
	conns, err := h.Connections.List(r.Context(), *v.Workspace, "")
	if err != nil {
		return nil, err
	}
	for _, c := range conns {
		if notify.ChatActions[c.AppKey] != "" {
			out.Chats = append(out.Chats, connectionRow{Connection: c, AppName: h.appName(c.AppKey)})
		}
	}
	return out, nil
}

// workflowAlerts saves a workflow's failure alert settings, or gives it its
// workspace's default again ("inherit"). A new webhook signing secret is
// shown on the page that answers, once.
func (h *Handler) workflowAlerts(w http.ResponseWriter, r *http.Request, v view) {
	if err := r.ParseForm(); err != nil {
		h.errorPage(w, r, v.P, errBadForm)
		return
	}
	id := r.PathValue("id")
	back := "/" + v.Workspace.Slug + "/workflows/" + id
	if _, ok := h.loadWorkflow(w, r, v); !ok {
		return
	}
	pf := r.PostForm
	if pf.Get("inherit") != "" {
		if err := h.Notify.ClearAlerts(r.Context(), v.Workspace.ID, id); err != nil {
			h.errorPage(w, r, v.P, err)
			return
		}
		setFlash(w, "settings-saved")
		redirect(w, r, back)
		return
	}
	change := notify.AlertChange{AlertSettings: notify.AlertSettings{
		Mode: pf.Get("mode"), Bell: pf.Get("bell") == "on", Emails: strings.FieldsFunc(pf.Get("emails"), func(r rune) bool { return r == ',' || r == ' ' || r == '\n' }),
		ChatConnectionID: pf.Get("chatConnection"), ChatChannel: pf.Get("chatChannel"), WebhookURL: pf.Get("webhookUrl"),
	}, NewSecret: pf.Get("newSecret") == "on"}
	secret, err := h.Notify.SetAlerts(r.Context(), v.Workspace.ID, id, change, notify.ChatTargetsOf(h.Connections))
	if err != nil {
		h.refuse(w, r, v.P, back, err)
		return
	}
	if secret == "" {
		setFlash(w, "settings-saved")
		redirect(w, r, back)
		return
	}
	h.renderWorkflowWith(w, r, v, http.StatusOK, "", secret)
}
