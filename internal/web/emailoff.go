package web

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
	"taskjuice/internal/connection"
	"taskjuice/internal/portal"
)

// Email off: a server without SMTP sends no email, so the actions that
// would email a link (an invitation, a client request, a request to
// reconnect) give staff the link to hand over themselves instead. The link
// is shown once: its token is minted for that one answer, only its hash is
// stored, and it crosses the post/redirect/get in a short-lived cookie
// scoped to the page it is shown on, which that page reads and clears.

// SetEmailOn tells the pages whether this server sends email (SMTP
// configured and its mailer running). With it off, the pages say so where
// an email would be sent and hand staff the link instead.
func (h *Handler) SetEmailOn(on bool) { h.emailOn.Store(on) }

// EmailOn reports whether this server sends email.
func (h *Handler) EmailOn() bool { return h.emailOn.Load() }

// The flashes of the actions that would have emailed: nothing was sent,
// and the page shows the link once.
var emailOffFlashes = map[string]string{
	"invitation-link":   "Invitation created. No email was sent: email is off on this server.",
	"invitation-relink": "New invitation link created; the earlier link no longer works. No email was sent: email is off on this server.",
	"requests-link":     "Request created. No email was sent: email is off on this server.",
	"request-relink":    "New request link created; the earlier link no longer works. No email was sent: email is off on this server.",
	"reconnect-link":    "Request to reconnect created. No email was sent: email is off on this server.",
}

func init() {
	for k, v := range emailOffFlashes {
		flashes[k] = v
	}
}

// Kinds of link handed over by hand; the value is the cookie's first part.
const (
	onceInvitation = "invitation"
	onceRequest    = "request"
	onceReconnect  = "reconnect"
)

const onceLinkCookie = "tj_once_link"

// onceLink is a link shown once, on the page the action redirected to.
type onceLink struct {
	Kind string
	URL  string
}

// Invitation reports whether the link is an invitation's sign-up link.
func (l onceLink) Invitation() bool { return l.Kind == onceInvitation }

// setOnceLink hands the link of token across the redirect to the page at
// path, and only there: the cookie is HttpOnly, SameSite=Strict, scoped to
// path and lives two minutes.
func (h *Handler) setOnceLink(w http.ResponseWriter, r *http.Request, path, kind, token string) {
	http.SetCookie(w, &http.Cookie{Name: onceLinkCookie, Value: kind + "." + token, Path: path, MaxAge: 120,
		HttpOnly: true, Secure: h.secureCookies(r), SameSite: http.SameSiteStrictMode})
}

// takeOnceLink reads the link handed to this page, if any, and clears it:
// a reload no longer shows it. Only the page itself (a GET of the path
// the cookie names) takes it, not a form posted under that path.
func (h *Handler) takeOnceLink(w http.ResponseWriter, r *http.Request) *onceLink {
	if r.Method != http.MethodGet {
		return nil
	}
	c, err := r.Cookie(onceLinkCookie)
	if err != nil {
		return nil
	}
	http.SetCookie(w, &http.Cookie{Name: onceLinkCookie, Value: "", Path: r.URL.Path, MaxAge: -1,
		HttpOnly: true, Secure: h.secureCookies(r), SameSite: http.SameSiteStrictMode})
	kind, token, _ := strings.Cut(c.Value, ".")
	base := strings.TrimRight(h.BaseURL, "/")
	switch {
	case kind == onceInvitation && strings.HasPrefix(token, "tji_"):
		return &onceLink{Kind: kind, URL: base + account.InvitationPath(token)}
	case (kind == onceRequest || kind == onceReconnect) && strings.HasPrefix(token, "tjl_"):
		return &onceLink{Kind: kind, URL: base + portal.LinkPath(token)}
	}
	return nil
}

func (h *Handler) secureCookies(r *http.Request) bool {
	return r.TLS != nil || strings.HasPrefix(h.BaseURL, "https://")
}

// logEmailOff records an email that was not sent because email is off:
// who it was for and what it was, never its link.
func (h *Handler) logEmailOff(ctx context.Context, kind, to string) {
	if h.log == nil {
		return
	}
	h.log.InfoContext(ctx, "email not sent: email is off on this server (no SMTP host); the link is shown to staff once instead",
		"email", kind, "to", to)
}

// inviteClientByLink is "Send invitation" with email off: the invitation is
// recorded and its sign-up link shown to staff once.
func (h *Handler) inviteClientByLink(w http.ResponseWriter, r *http.Request, v view, email string) {
	inv, token, err := h.accounts.InviteClientByLink(r.Context(), *v.P, *v.Workspace, email)
	if err != nil {
		h.refuseForm(w, r, v.P, "/"+v.Workspace.Slug+"/workspace/members", err, map[string]string{"email": email})
		return
	}
	h.logEmailOff(r.Context(), "client invitation", inv.Email)
	h.handOver(w, r, "/"+v.Workspace.Slug+"/workspace/members", "invitation-link", onceInvitation, token)
}

func (h *Handler) resendInvitationByLink(w http.ResponseWriter, r *http.Request, v view) {
	inv, token, err := h.accounts.ResendInvitationByLink(r.Context(), *v.P, *v.Workspace, r.PathValue("id"))
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	h.logEmailOff(r.Context(), "client invitation (resend)", inv.Email)
	h.handOver(w, r, "/"+v.Workspace.Slug+"/workspace/members", "invitation-relink", onceInvitation, token)
}

// dispatchByLink is "Send requests" with email off: the queue goes to the
// client's inbox and the sign-in link is shown to staff once.
func (h *Handler) dispatchByLink(w http.ResponseWriter, r *http.Request, v view, note string) {
	b, token, err := h.Portal.DispatchByLink(r.Context(), *v.P, *v.Workspace, r.PostForm.Get("client"), note)
	if err != nil {
		h.refuseForm(w, r, v.P, "/"+v.Workspace.Slug+"/clients/requests", err, map[string]string{"note": note})
		return
	}
	h.logEmailOff(r.Context(), "client request", b.ClientEmail)
	h.handOver(w, r, "/"+v.Workspace.Slug+"/clients/requests", "requests-link", onceRequest, token)
}

func (h *Handler) resendRequestByLink(w http.ResponseWriter, r *http.Request, v view) {
	b, token, err := h.Portal.ResendByLink(r.Context(), *v.P, *v.Workspace, r.PathValue("id"))
	if err != nil {
		h.refuse(w, r, v.P, "/"+v.Workspace.Slug+"/clients/requests", err)
		return
	}
	h.logEmailOff(r.Context(), "client request (resend)", b.ClientEmail)
	h.handOver(w, r, "/"+v.Workspace.Slug+"/clients/requests", "request-relink", onceRequest, token)
}

// requestReconnectByLink is "Ask the client to reconnect" with email off:
// the request goes to the client's inbox and its sign-in link is shown to
// staff once.
func (h *Handler) requestReconnectByLink(w http.ResponseWriter, r *http.Request, v view) {
	b, token, err := h.Portal.RequestReconnectByLink(r.Context(), *v.P, *v.Workspace, r.PathValue("id"), "")
	if err != nil {
		h.refuse(w, r, v.P, h.connectionURL(v, r.PathValue("id")), apperr.Explain(err, "There is no such connection in this workspace."))
		return
	}
	h.logEmailOff(r.Context(), "client reconnect request", b.ClientEmail)
	h.handOver(w, r, "/"+v.Workspace.Slug+"/connections/"+r.PathValue("id"), "reconnect-link", onceReconnect, token)
}

// handOver answers an action whose link staff hand over themselves: the
// flash says nothing was sent, and the page at to shows the link once.
func (h *Handler) handOver(w http.ResponseWriter, r *http.Request, to, flash, kind, token string) {
	h.setOnceLink(w, r, to, kind, token)
	setFlash(w, flash)
	redirect(w, r, to)
}

// portalReconnectNow is the client's "Reconnect" with email off: no email
// can bring them a link, and they are signed in already, so the reconnect
// request goes to their inbox and they go through the app's consent screen
// at once; they come back to the request page.
func (h *Handler) portalReconnectNow(w http.ResponseWriter, r *http.Request, p account.Principal, c connection.Connection) {
	b, err := h.Portal.ReconnectNow(r.Context(), p, c.ID)
	if err != nil {
		h.refuse(w, r, &p, portalConnectionURL(c.ID), err)
		return
	}
	if h.log != nil {
		h.log.InfoContext(r.Context(), "email not sent: email is off on this server; the client reconnects from the portal at once",
			"email", "client reconnect request", "to", p.User.Email)
	}
	if len(b.Requests) != 1 {
		h.errorPage(w, r, &p, fmt.Errorf("reconnect request %s holds %d requests, want 1", b.ID, len(b.Requests)))
		return
	}
	h.startClientConsent(w, r, p, b, b.Requests[0])
}
