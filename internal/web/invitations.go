package web

import (
	"net/http"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
)

// Inviting clients from the workspace's Members page, and the sign-up page
// an invitation email links to.

func (h *Handler) inviteClient(w http.ResponseWriter, r *http.Request, v view) {
	if err := r.ParseForm(); err != nil {
		h.errorPage(w, r, v.P, errBadForm)
		return
	}
	email := r.PostForm.Get("email")
	if !h.EmailOn() {
		h.inviteClientByLink(w, r, v, email)
		return
	}
	if _, err := h.accounts.InviteClient(r.Context(), *v.P, *v.Workspace, email); err != nil {
		h.refuseForm(w, r, v.P, "/"+v.Workspace.Slug+"/workspace/members", err, map[string]string{"email": email})
		return
	}
	setFlash(w, "invitation-sent")
	redirect(w, r, "/"+v.Workspace.Slug+"/workspace/members")
}

func (h *Handler) resendInvitation(w http.ResponseWriter, r *http.Request, v view) {
	if !h.EmailOn() {
		h.resendInvitationByLink(w, r, v)
		return
	}
	if _, err := h.accounts.ResendInvitation(r.Context(), *v.P, *v.Workspace, r.PathValue("id")); err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	setFlash(w, "invitation-resent")
	redirect(w, r, "/"+v.Workspace.Slug+"/workspace/members")
}

func (h *Handler) revokeInvitation(w http.ResponseWriter, r *http.Request, v view) {
	if err := h.accounts.RevokeInvitation(r.Context(), *v.P, *v.Workspace, r.PathValue("id")); err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	setFlash(w, "invitation-revoked")
	redirect(w, r, "/"+v.Workspace.Slug+"/workspace/members")
}

type acceptData struct {
	Offer account.InvitationOffer
	Token string
	Name  string
	Error string
}

// invitation is the sign-up page: the person chooses a name and password.
// The token is only in the address, never in the page.
func (h *Handler) invitation(w http.ResponseWriter, r *http.Request) {
	if p, err := h.auth.Session(r); err == nil {
		h.errorPage(w, r, &p, apperr.Conflict("signed_in", "", "You are signed in as "+p.User.Email+". Sign out first to accept an invitation for someone else."))
		return
	}
	offer, err := h.accounts.InvitationByToken(r.Context(), r.PathValue("token"))
	if err != nil {
		h.errorPage(w, r, nil, err)
		return
	}
	h.render(w, r, http.StatusOK, "invitation", view{Title: "Join " + offer.WorkspaceName, Data: acceptData{Offer: offer}})
}

func (h *Handler) acceptInvitation(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		h.errorPage(w, r, nil, errBadForm)
		return
	}
	if p, err := h.auth.Session(r); err == nil {
		h.errorPage(w, r, &p, apperr.Conflict("signed_in", "", "You are signed in as "+p.User.Email+". Sign out first to accept an invitation for someone else."))
		return
	}
	token := r.PathValue("token")
	name := r.PostForm.Get("name")
	sess, p, err := h.accounts.AcceptInvitation(r.Context(), token, name, r.PostForm.Get("password"), h.auth.ClientIP(r), r.UserAgent())
	if err != nil {
		if e, ok := apperr.As(err); ok && e.Kind == apperr.KindInvalid {
			offer, oerr := h.accounts.InvitationByToken(r.Context(), token)
			if oerr != nil {
				h.errorPage(w, r, nil, oerr)
				return
			}
			h.render(w, r, http.StatusUnprocessableEntity, "invitation", view{Title: "Join " + offer.WorkspaceName, Data: acceptData{Offer: offer, Name: name, Error: e.Message}})
			return
		}
		h.errorPage(w, r, nil, err)
		return
	}
	h.auth.SetSession(w, r, sess)
	setFlash(w, "welcome")
	redirect(w, r, landing(p))
}
