package web

import (
	"net/http"

	"taskjuice/internal/account"
	"taskjuice/internal/authn"
)

// sessionToken is the asking browser's session secret ("" without one).
func sessionToken(r *http.Request) string {
	if c, err := r.Cookie(authn.SessionCookie); err == nil {
		return c.Value
	}
	return ""
}

// endSession signs one of the person's sessions out, from the Security
// page's list.
func (h *Handler) endSession(w http.ResponseWriter, r *http.Request, p account.Principal) {
	if err := h.accounts.EndSession(r.Context(), p.User.ID, r.PathValue("id")); err != nil {
		h.errorPage(w, r, &p, err)
		return
	}
	setFlash(w, "session-ended")
	redirect(w, r, securityPage+"#sessions")
}

// endAllSessions signs the person out everywhere, this browser included.
func (h *Handler) endAllSessions(w http.ResponseWriter, r *http.Request, p account.Principal) {
	if _, err := h.accounts.EndAllSessions(r.Context(), p.User.ID); err != nil {
		h.errorPage(w, r, &p, err)
		return
	}
	redirect(w, r, "/signin")
}
