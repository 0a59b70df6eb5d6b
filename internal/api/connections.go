package api

import (
	"net/http"
	"strings"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
	"taskjuice/internal/catalog"
	"taskjuice/internal/connection"
)

type appView struct {
	Key           string   `json:"key"`
	Name          string   `json:"name"`
	Description   string   `json:"description"`
	Auth          string   `json:"auth"`
	Permissions   []string `json:"permissions,omitempty"`
	Configured    bool     `json:"configured"`
	NotConfigured string   `json:"notConfiguredReason,omitempty"`
	Generic       bool     `json:"generic,omitempty"`
}

func (h *Handler) listApps(w http.ResponseWriter, r *http.Request, p account.Principal) {
	var out []appView
	for _, a := range h.catalog.Apps() {
		ok, why := a.Configured()
		v := appView{Key: a.Key, Name: a.Name, Description: a.Description, Auth: string(a.Auth), Permissions: a.Scopes(), Configured: ok, Generic: a.Generic}
		if !ok {
			v.NotConfigured = why
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, map[string]any{"apps": nonNil(out)})
}

// staffOnly: clients manage their connections from the portal.
func staffOnly(p account.Principal) error {
	if !p.Role.IsStaff() {
		return apperr.Forbidden("Clients manage their connections from the portal")
	}
	return nil
}

func (h *Handler) listConnections(w http.ResponseWriter, r *http.Request, p account.Principal) {
	if err := staffOnly(p); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	ws, err := h.accounts.WorkspaceBySlug(r.Context(), p, r.PathValue("slug"))
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	list, err := h.connections.List(r.Context(), ws, connection.Status(r.URL.Query().Get("status")))
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"connections": nonNil(list)})
}

// createConnection stores an API-key connection. OAuth apps connect through
// the provider's consent screen, in the browser.
func (h *Handler) createConnection(w http.ResponseWriter, r *http.Request, p account.Principal) {
	if err := staffOnly(p); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	ws, err := h.accounts.WorkspaceBySlug(r.Context(), p, r.PathValue("slug"))
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	var in struct {
		App    string            `json:"app"`
		Label  string            `json:"label"`
		Fields map[string]string `json:"fields"`
	}
	if err := decode(w, r, &in); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	app, ok := h.catalog.App(in.App)
	if !ok {
		writeError(w, r, h.log, apperr.Invalid("app", "Unknown app; see GET /api/v1/apps"))
		return
	}
	if app.IsOAuth() {
		writeError(w, r, h.log, apperr.Invalid("app", app.Name+" connects through its consent screen: open "+h.baseURL+"/"+ws.Slug+"/connections/new?app="+app.Key+" in a browser"))
		return
	}
	cred, meta, err := apiKeyCredential(app, in.Fields)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	label := strings.TrimSpace(in.Label)
	if label == "" {
		label = app.Name
	}
	c, err := h.connections.CreateWithCredential(r.Context(), ws, connection.New{
		AppKey: app.Key, Label: label, Status: connection.StatusActive, Metadata: meta,
		OwnerKind: connection.OwnerWorkspace, OwnerUserID: p.User.ID, Reason: "connected with an API key",
	}, cred, connection.Actor{Kind: connection.ActorUser, UserID: p.User.ID})
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	w.Header().Set("Location", "/api/v1/connections/"+c.ID)
	writeJSON(w, http.StatusCreated, c)
}

// apiKeyCredential checks an API-key app's fields: secret ones go to the
// vault, the rest are metadata.
func apiKeyCredential(app catalog.App, fields map[string]string) (connection.Credential, map[string]string, error) {
	cred := connection.Credential{Fields: map[string]string{}}
	meta := map[string]string{}
	known := map[string]bool{}
	for _, f := range app.Fields {
		known[f.Name] = true
		val := strings.TrimSpace(fields[f.Name])
		if err := f.Check(val); err != nil {
			return cred, nil, apperr.Invalid("fields."+f.Name, err.Error())
		}
		if f.Secret {
			cred.Fields[f.Name] = val
			if app.APIKey != nil && app.APIKey.Field == f.Name {
				cred.APIKey = val
			}
		} else if val != "" {
			meta[f.Name] = val
		}
	}
	for name := range fields {
		if !known[name] {
			return cred, nil, apperr.Invalid("fields."+name, "Unknown field "+name+" for "+app.Name)
		}
	}
	return cred, meta, nil
}

// connection loads a connection of the caller's account by id.
func (h *Handler) connection(w http.ResponseWriter, r *http.Request, p account.Principal) (connection.Connection, account.Workspace, bool) {
	if err := staffOnly(p); err != nil {
		writeError(w, r, h.log, err)
		return connection.Connection{}, account.Workspace{}, false
	}
	c, err := h.connections.GetInAccount(r.Context(), p.AccountID, r.PathValue("id"))
	if err != nil {
		writeError(w, r, h.log, err)
		return connection.Connection{}, account.Workspace{}, false
	}
	ws, err := h.accounts.WorkspaceByID(r.Context(), p, c.WorkspaceID)
	if err != nil {
		writeError(w, r, h.log, err)
		return connection.Connection{}, account.Workspace{}, false
	}
	return c, ws, true
}

func (h *Handler) getConnection(w http.ResponseWriter, r *http.Request, p account.Principal) {
	if c, _, ok := h.connection(w, r, p); ok {
		writeJSON(w, http.StatusOK, c)
	}
}

func (h *Handler) patchConnection(w http.ResponseWriter, r *http.Request, p account.Principal) {
	c, ws, ok := h.connection(w, r, p)
	if !ok {
		return
	}
	var in struct {
		Label *string `json:"label"`
	}
	if err := decode(w, r, &in); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	if in.Label == nil {
		writeError(w, r, h.log, apperr.Invalid("label", "Field \"label\" is required"))
		return
	}
	c, err := h.connections.Rename(r.Context(), ws, c.ID, *in.Label)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (h *Handler) connectionHistory(w http.ResponseWriter, r *http.Request, p account.Principal) {
	c, ws, ok := h.connection(w, r, p)
	if !ok {
		return
	}
	hist, err := h.connections.History(r.Context(), ws, c.ID)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"history": nonNil(hist)})
}

// refreshConnection re-runs the token refresh: 200 with the connection, or
// 400 "Connection cannot be refreshed…" when it needs a reconnect.
func (h *Handler) refreshConnection(w http.ResponseWriter, r *http.Request, p account.Principal) {
	c, ws, ok := h.connection(w, r, p)
	if !ok {
		return
	}
	if err := h.refresher.Refresh(r.Context(), c.ID); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	c, err := h.connections.Get(r.Context(), ws, c.ID)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"message": "Connection refreshed.", "connection": c})
}

func (h *Handler) revokeConnection(w http.ResponseWriter, r *http.Request, p account.Principal) {
	c, ws, ok := h.connection(w, r, p)
	if !ok {
		return
	}
	app, _ := h.catalog.App(c.AppKey)
	cfg, revokeURL := connection.Revocation(app, h.baseURL+"/oauth/callback")
	c, err := h.connections.Revoke(r.Context(), ws, c.ID, connection.Actor{Kind: connection.ActorUser, UserID: p.User.ID}, cfg, revokeURL, nil)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}
