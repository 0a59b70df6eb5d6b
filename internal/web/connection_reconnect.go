package web

import (
	"context"
	"fmt"
	"net/http"

	"golang.org/x/oauth2"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
	"taskjuice/internal/connection"
)

// madeWith is the external account a connection's reconnect should bring
// back: the one its held runs were made with while a reconnect as another
// account keeps them held, else the one it was made with. Empty when
// unknown.
func (h *Handler) madeWith(ctx context.Context, ws account.Workspace, c connection.Connection) (connection.ExternalAccount, error) {
	hold, ok, err := h.Connections.AccountHold(ctx, ws, c.ID)
	if err != nil {
		return connection.ExternalAccount{}, err
	}
	if ok {
		return hold.Previous, nil
	}
	return connection.ExternalAccount{ID: c.ExternalAccountID, Name: c.ExternalAccountName}, nil
}

// loginHint asks the provider's consent screen for the account a connection
// was made with: the standard login_hint parameter (OpenID Connect Core
// 3.1.2.1), by its id, else its name.
func loginHint(a connection.ExternalAccount) []oauth2.AuthCodeOption {
	hint := a.ID
	if hint == "" {
		hint = a.Name
	}
	if hint == "" {
		return nil
	}
	return []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("login_hint", hint)}
}

type reconnectData struct {
	Row     connectionRow
	Account string
	Held    int
}

// reconnectConfirm is the page before the consent screen: it names the
// account the connection was made with and asks to sign in to it again.
func (h *Handler) reconnectConfirm(w http.ResponseWriter, r *http.Request, v view) {
	c, ok := h.loadConnection(w, r, v)
	if !ok {
		return
	}
	if app, ok := h.Catalog.App(c.AppKey); !ok || !app.IsOAuth() {
		h.renderConnection(w, r, v, http.StatusBadRequest, msgNoConsentScreen)
		return
	}
	prev, err := h.madeWith(r.Context(), *v.Workspace, c)
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	d := reconnectData{Row: connectionRow{Connection: c, AppName: h.appName(c.AppKey)}, Account: prev.Name}
	if d.Account == "" {
		d.Account = prev.ID
	}
	if d.Held, err = h.Engine.HeldOn(r.Context(), v.Workspace.ID, c.ID); err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	v.Title, v.Data = "Reconnect "+c.Label+" · Connections", d
	h.render(w, r, http.StatusOK, "connection_reconnect", v)
}

const msgNoConsentScreen = "This connection's app does not use a consent screen; create a new connection with the new key instead."

// accountHoldView is the connection page's notice about runs a reconnect
// as another account keeps held.
type accountHoldView struct {
	Previous, Current string
	Held              string // "2 held runs are kept held so they do not …"
	CanRelease        bool
}

func (h *Handler) accountHoldOf(ctx context.Context, v view, c connection.Connection) (*accountHoldView, error) {
	hold, ok, err := h.Connections.AccountHold(ctx, *v.Workspace, c.ID)
	if err != nil || !ok {
		return nil, err
	}
	n, err := h.Engine.HeldOn(ctx, v.Workspace.ID, c.ID)
	if err != nil || n == 0 {
		return nil, err
	}
	held := fmt.Sprintf("%d held runs are kept held so they do not run against another account's data.", n)
	if n == 1 {
		held = "1 held run is kept held so it does not run against another account's data."
	}
	return &accountHoldView{Previous: orID(hold.Previous), Current: orID(hold.Current), Held: held,
		CanRelease: v.P.Can(account.CapWrite)}, nil
}

func orID(a connection.ExternalAccount) string {
	if a.Name != "" {
		return a.Name
	}
	return a.ID
}

// releaseHeld is "Release them anyway": the runs kept held after a
// reconnect as another account go on as after a same-account reconnect.
func (h *Handler) releaseHeld(w http.ResponseWriter, r *http.Request, v view) {
	if !v.P.Can(account.CapWrite) {
		h.errorPage(w, r, v.P, apperr.Forbidden("Your role cannot release held runs."))
		return
	}
	c, ok := h.loadConnection(w, r, v)
	if !ok {
		return
	}
	if err := h.Connections.ReleaseAccountHold(r.Context(), *v.Workspace, c.ID, h.actor(v.P)); err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	setFlash(w, "held-released")
	redirect(w, r, "/"+v.Workspace.Slug+"/connections/"+c.ID)
}
