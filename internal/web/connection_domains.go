package web

import (
	"net/http"
	"strings"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
	"taskjuice/internal/catalog"
)

// msgDomainsAdminOnly answers a member who tries to widen where a
// credential may be sent: that is the account's owners' and admins' call.
const msgDomainsAdminOnly = "Only account owners and admins can change a connection's allowed domains"

// connectionDomains is the "Allowed domains" part of a connection's page.
type connectionDomains struct {
	// AppHosts are the hosts the app declares, for this connection.
	AppHosts []string
	// Extra are the hosts an owner or admin added.
	Extra []string
	// Text is the form's value: Extra, one per line (or what was typed,
	// when it was refused).
	Text    string
	CanEdit bool
	Error   string
}

func (h *Handler) domainsOf(r *http.Request, v view, app *catalog.App, meta map[string]string, id string) (connectionDomains, error) {
	d := connectionDomains{CanEdit: v.P.Can(account.CapManageWorkspaces)}
	if app != nil {
		for _, o := range app.Origins(meta) {
			d.AppHosts = append(d.AppHosts, catalog.DisplayOrigin(o))
		}
	}
	extra, err := h.Connections.AllowedDomains(r.Context(), *v.Workspace, id)
	if err != nil {
		return d, err
	}
	for _, o := range extra {
		d.Extra = append(d.Extra, catalog.DisplayOrigin(o))
	}
	d.Text = strings.Join(d.Extra, "\n")
	return d, nil
}

// saveAllowedDomains replaces a connection's allowed domains (one host per
// line). Owners and admins only: a member could otherwise send any
// credential of the workspace wherever a workflow names.
func (h *Handler) saveAllowedDomains(w http.ResponseWriter, r *http.Request, v view) {
	if !v.P.Can(account.CapManageWorkspaces) {
		h.errorPage(w, r, v.P, apperr.Forbidden(msgDomainsAdminOnly))
		return
	}
	if err := r.ParseForm(); err != nil {
		h.errorPage(w, r, v.P, errBadForm)
		return
	}
	text := r.PostForm.Get("domains")
	lines := strings.FieldsFunc(text, func(c rune) bool { return c == '\n' || c == '\r' || c == ',' })
	id := r.PathValue("id")
	if _, err := h.Connections.SetAllowedDomains(r.Context(), *v.Workspace, id, lines, h.actor(v.P)); err != nil {
		h.refuseForm(w, r, v.P, h.connectionURL(v, id)+"#allowed-domains", apperr.Explain(err, "There is no such connection in this workspace."), map[string]string{"domains": text})
		return
	}
	setFlash(w, "domains-saved")
	redirect(w, r, "/"+v.Workspace.Slug+"/connections/"+id)
}
