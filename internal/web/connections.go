package web

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/oauth2"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
	"taskjuice/internal/authn"
	"taskjuice/internal/catalog"
	"taskjuice/internal/connection"
)

// connectionRow is a connection with its app, for the pages.
type connectionRow struct {
	connection.Connection
	AppName string
}

type connectionsData struct {
	Rows     []connectionRow
	Filter   string
	Statuses []connection.Status
}

func (h *Handler) appName(key string) string {
	if a, ok := h.Catalog.App(key); ok {
		return a.Name
	}
	return key
}

func (h *Handler) connections(w http.ResponseWriter, r *http.Request, v view) {
	filter := connection.Status(r.URL.Query().Get("status"))
	list, err := h.Connections.List(r.Context(), *v.Workspace, filter)
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	d := connectionsData{Filter: string(filter), Statuses: connection.Statuses}
	for _, c := range list {
		d.Rows = append(d.Rows, connectionRow{Connection: c, AppName: h.appName(c.AppKey)})
	}
	v.Title, v.Data = "Connections · "+v.Workspace.Name, d
	h.render(w, r, http.StatusOK, "connections", v)
}

type connectData struct {
	Apps   []catalog.App
	App    *catalog.App
	Label  string
	Values map[string]string
	Errors map[string]string
	Error  string
}

func (h *Handler) connectForm(w http.ResponseWriter, r *http.Request, v view) {
	d := connectData{Apps: h.Catalog.Apps()}
	if key := r.URL.Query().Get("app"); key != "" {
		app, ok := h.Catalog.App(key)
		if !ok {
			h.errorPage(w, r, v.P, apperr.ErrNotFound)
			return
		}
		d.App, d.Label = &app, app.Name
	}
	v.Title, v.Data = "Connect New Account · "+v.Workspace.Name, d
	h.render(w, r, http.StatusOK, "connect", v)
}

func (h *Handler) actor(p *account.Principal) connection.Actor {
	kind := connection.ActorUser
	if p.IsClient() {
		kind = connection.ActorClient
	}
	return connection.Actor{Kind: kind, UserID: p.User.ID}
}

func (h *Handler) callbackURL() string { return h.BaseURL + "/oauth/callback" }

// connect starts connecting an app: the provider's consent screen for an
// OAuth app, or storing the key for an API-key app.
func (h *Handler) connect(w http.ResponseWriter, r *http.Request, v view) {
	if err := r.ParseForm(); err != nil {
		h.errorPage(w, r, v.P, errBadForm)
		return
	}
	app, ok := h.Catalog.App(r.PostForm.Get("app"))
	if !ok {
		h.errorPage(w, r, v.P, apperr.Invalid("app", "Choose an app from the list."))
		return
	}
	label := strings.TrimSpace(r.PostForm.Get("label"))
	if label == "" {
		label = app.Name
	}
	if ok, reason := app.Configured(); !ok {
		h.errorPage(w, r, v.P, apperr.BadRequest("app_not_configured", reason))
		return
	}
	if app.IsOAuth() {
		h.startConsent(w, r, v, app, label, "")
		return
	}
	// An API-key app: check every field, keep the secret ones in the vault
	// and the rest as metadata.
	cred := connection.Credential{Fields: map[string]string{}}
	meta, values, errs := map[string]string{}, map[string]string{}, map[string]string{}
	for _, f := range app.Fields {
		val := strings.TrimSpace(r.PostForm.Get("field_" + f.Name))
		if err := f.Check(val); err != nil {
			errs[f.Name] = err.Error()
		}
		if f.Secret {
			cred.Fields[f.Name] = val
			if app.APIKey != nil && app.APIKey.Field == f.Name {
				cred.APIKey = val
			}
		} else {
			meta[f.Name], values[f.Name] = val, val
		}
	}
	if len(errs) > 0 {
		v.Data = connectData{App: &app, Label: label, Values: values, Errors: errs}
		h.render(w, r, http.StatusUnprocessableEntity, "connect", v)
		return
	}
	c, err := h.Connections.CreateWithCredential(r.Context(), *v.Workspace, connection.New{
		AppKey: app.Key, Label: label, Status: connection.StatusActive, Metadata: meta,
		OwnerKind: connection.OwnerWorkspace, OwnerUserID: v.P.User.ID, Reason: "connected with an API key",
	}, cred, h.actor(v.P))
	if err != nil {
		if e, ok := apperr.As(err); ok {
			v.Data = connectData{App: &app, Label: label, Values: values, Error: e.Message}
			h.render(w, r, apperr.Status(err), "connect", v)
			return
		}
		h.errorPage(w, r, v.P, err)
		return
	}
	setFlash(w, "connected")
	redirect(w, r, "/"+v.Workspace.Slug+"/connections/"+c.ID)
}

func (h *Handler) startConsent(w http.ResponseWriter, r *http.Request, v view, app catalog.App, label, reconnectID string, extra ...oauth2.AuthCodeOption) {
	cfg, err := connection.OAuthConfig(app, h.callbackURL())
	if err != nil {
		h.errorPage(w, r, v.P, apperr.BadRequest("app_not_configured", err.Error()))
		return
	}
	authURL, _, err := h.Connections.BeginConsent(r.Context(), cfg, connection.ConsentRequest{
		Workspace: *v.Workspace, AppKey: app.Key, Label: label, ReconnectID: reconnectID,
		Actor: h.actor(v.P), SessionBinding: authnBinding(r), ReturnTo: "/" + v.Workspace.Slug + "/connections",
		OwnerKind: connection.OwnerWorkspace,
	}, append(connection.AuthCodeOptions(app), extra...)...)
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	http.Redirect(w, r, authURL, http.StatusSeeOther)
}

// oauthCallback is where providers send people back after consent.
func (h *Handler) oauthCallback(w http.ResponseWriter, r *http.Request) {
	p, err := h.auth.Session(r)
	if err != nil {
		h.errorPage(w, r, nil, apperr.Unauthorized("Your sign-in ended before the app sent you back. Sign in and connect again."))
		return
	}
	res, err := h.Connections.CompleteConsent(r.Context(), r.URL.Query(), authnBinding(r),
		func(c connection.Connection) (*oauthConfig, error) {
			app, ok := h.Catalog.App(c.AppKey)
			if !ok {
				return nil, errors.New("the app of this connection is no longer in the catalog")
			}
			return connection.OAuthConfig(app, h.callbackURL())
		},
		h.identify)
	if err != nil {
		if e, ok := apperr.As(err); ok && res.ReturnTo != "" {
			err = &apperr.Error{Kind: e.Kind, Code: e.Code, Message: e.Message}
		}
		h.errorPage(w, r, &p, err)
		return
	}
	if err := h.clientConsentDone(r.Context(), res.Connection); err != nil {
		h.errorPage(w, r, &p, err)
		return
	}
	switch {
	case res.Connection.OwnerKind == connection.OwnerClient && isPortalPath(res.ReturnTo):
		// The request page shows the app as "Connected".
		redirect(w, r, safeNext(res.ReturnTo))
		return
	case res.AccountChanged:
		setFlash(w, "account-changed")
	case res.Reconnect:
		setFlash(w, "reconnected")
	default:
		setFlash(w, "connected")
	}
	to := safeNext(res.ReturnTo)
	if to == "" {
		to = landing(p)
	} else {
		to += "/" + url.PathEscape(res.Connection.ID)
	}
	redirect(w, r, to)
}

type connectionData struct {
	Row     connectionRow
	App     *catalog.App
	History []connection.Event
	Error   string
	Domains connectionDomains
	// Hold is set while a reconnect as another account keeps runs held.
	Hold *accountHoldView
}

func (h *Handler) loadConnection(w http.ResponseWriter, r *http.Request, v view) (connection.Connection, bool) {
	c, err := h.Connections.Get(r.Context(), *v.Workspace, r.PathValue("id"))
	if err != nil {
		err = apperr.Explain(err, "There is no such connection in this workspace.")
		h.errorPage(w, r, v.P, err)
		return connection.Connection{}, false
	}
	return c, true
}

func (h *Handler) connectionDetail(w http.ResponseWriter, r *http.Request, v view) {
	var edit func(*connectionDomains)
	if k, ok := keptForm(r); ok {
		edit = func(d *connectionDomains) { d.Text, d.Error = k.Values["domains"], k.Error }
	}
	h.renderConnectionWith(w, r, v, http.StatusOK, "", edit)
}

func (h *Handler) renderConnection(w http.ResponseWriter, r *http.Request, v view, status int, msg string) {
	h.renderConnectionWith(w, r, v, status, msg, nil)
}

// renderConnectionWith shows a connection's page; edit, when given, adjusts
// its "Allowed domains" part (a refused form shown again).
func (h *Handler) renderConnectionWith(w http.ResponseWriter, r *http.Request, v view, status int, msg string, edit func(*connectionDomains)) {
	c, ok := h.loadConnection(w, r, v)
	if !ok {
		return
	}
	hist, err := h.Connections.History(r.Context(), *v.Workspace, c.ID)
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	d := connectionData{Row: connectionRow{Connection: c, AppName: h.appName(c.AppKey)}, History: hist, Error: msg}
	if app, ok := h.Catalog.App(c.AppKey); ok {
		d.App = &app
	}
	if d.Domains, err = h.domainsOf(r, v, d.App, c.Metadata, c.ID); err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	if edit != nil {
		edit(&d.Domains)
	}
	if d.Hold, err = h.accountHoldOf(r.Context(), v, c); err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	v.Title, v.Data = c.Label+" · Connections", d
	h.render(w, r, status, "connection", v)
}

func (h *Handler) renameConnection(w http.ResponseWriter, r *http.Request, v view) {
	if err := r.ParseForm(); err != nil {
		h.errorPage(w, r, v.P, errBadForm)
		return
	}
	c, err := h.Connections.Rename(r.Context(), *v.Workspace, r.PathValue("id"), r.PostForm.Get("label"))
	if err != nil {
		h.refuse(w, r, v.P, h.connectionURL(v, r.PathValue("id")), err)
		return
	}
	setFlash(w, "renamed")
	redirect(w, r, "/"+v.Workspace.Slug+"/connections/"+c.ID)
}

func (h *Handler) refreshConnection(w http.ResponseWriter, r *http.Request, v view) {
	c, ok := h.loadConnection(w, r, v)
	if !ok {
		return
	}
	if err := h.Refresher.Refresh(r.Context(), c.ID); err != nil {
		h.refuse(w, r, v.P, h.connectionURL(v, c.ID), err)
		return
	}
	setFlash(w, "refreshed")
	redirect(w, r, "/"+v.Workspace.Slug+"/connections/"+c.ID)
}

func (h *Handler) reconnect(w http.ResponseWriter, r *http.Request, v view) {
	c, ok := h.loadConnection(w, r, v)
	if !ok {
		return
	}
	app, ok := h.Catalog.App(c.AppKey)
	if !ok || !app.IsOAuth() {
		h.refuse(w, r, v.P, h.connectionURL(v, c.ID), apperr.BadRequest("not_oauth", msgNoConsentScreen))
		return
	}
	prev, err := h.madeWith(r.Context(), *v.Workspace, c)
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	h.startConsent(w, r, v, app, c.Label, c.ID, loginHint(prev)...)
}

func (h *Handler) revokeConnection(w http.ResponseWriter, r *http.Request, v view) {
	c, ok := h.loadConnection(w, r, v)
	if !ok {
		return
	}
	app, _ := h.Catalog.App(c.AppKey)
	cfg, revokeURL := connection.Revocation(app, h.callbackURL())
	if _, err := h.Connections.Revoke(r.Context(), *v.Workspace, c.ID, h.actor(v.P), cfg, revokeURL, h.HTTPClient); err != nil {
		h.refuse(w, r, v.P, h.connectionURL(v, c.ID), err)
		return
	}
	setFlash(w, "revoked")
	redirect(w, r, "/"+v.Workspace.Slug+"/connections/"+c.ID)
}

type oauthConfig = oauth2.Config

func (h *Handler) connectionURL(v view, id string) string {
	return "/" + v.Workspace.Slug + "/connections/" + url.PathEscape(id)
}

func authnBinding(r *http.Request) string { return authn.SessionBinding(r) }

// identify reads the external account of a fresh token through the app's
// catalog entry.
func (h *Handler) identify(ctx context.Context, c connection.Connection, tok *oauth2.Token) (connection.ExternalAccount, error) {
	app, ok := h.Catalog.App(c.AppKey)
	if !ok {
		return connection.ExternalAccount{}, errors.New("the app of this connection is no longer in the catalog")
	}
	return connection.Identify(ctx, h.HTTPClient, app, tok)
}
