package web

import (
	"net/http"
	"net/url"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
)

// The team page (/team): the "Teammates" tab lists the account's staff,
// with role changes and removal for owners and admins; the "Invitations"
// tab (owners and admins) invites a teammate and resends or revokes
// pending invitations.

type teamData struct {
	Tab         string
	Staff       []account.Member
	Invitations []account.Invitation
	CanManage   bool
	Email, Role string
	Error       string
}

func (h *Handler) team(w http.ResponseWriter, r *http.Request, p account.Principal) {
	k, _ := keptForm(r)
	h.renderTeam(w, r, p, http.StatusOK, teamData{Tab: r.URL.Query().Get("tab"), Email: k.Values["email"], Role: k.Values["role"], Error: k.Error})
}

func (h *Handler) renderTeam(w http.ResponseWriter, r *http.Request, p account.Principal, status int, d teamData) {
	d.CanManage = p.Can(account.CapInviteTeammate)
	if d.Tab != "invitations" {
		d.Tab = "teammates"
	}
	if d.Tab == "invitations" && !d.CanManage {
		h.errorPage(w, r, &p, apperr.Forbidden(account.MsgAdminRequired))
		return
	}
	var err error
	if d.Staff, err = h.accounts.Staff(r.Context(), p); err != nil {
		h.errorPage(w, r, &p, err)
		return
	}
	if d.CanManage {
		if d.Invitations, err = h.accounts.TeamInvitations(r.Context(), p); err != nil {
			h.errorPage(w, r, &p, err)
			return
		}
	}
	h.render(w, r, status, "team", view{Title: "Team", P: &p, Section: "team", Data: d})
}

const teamInvitationsURL = "/team?tab=invitations"

func (h *Handler) inviteTeammate(w http.ResponseWriter, r *http.Request, p account.Principal) {
	if err := r.ParseForm(); err != nil {
		h.errorPage(w, r, &p, errBadForm)
		return
	}
	email, role := r.PostForm.Get("email"), r.PostForm.Get("role")
	_, token, err := h.accounts.InviteTeammate(r.Context(), p, email, role, h.EmailOn())
	if err != nil {
		h.refuseForm(w, r, &p, teamInvitationsURL, err, map[string]string{"email": email, "role": role})
		return
	}
	if token != "" {
		h.logEmailOff(r.Context(), "teammate invitation", email)
		h.handOver(w, r, "/team", "invitation-link", onceInvitation, token)
		return
	}
	setFlash(w, "teammate-invited")
	redirect(w, r, teamInvitationsURL)
}

func (h *Handler) resendTeamInvitation(w http.ResponseWriter, r *http.Request, p account.Principal) {
	inv, token, err := h.accounts.ResendTeamInvitation(r.Context(), p, r.PathValue("id"), h.EmailOn())
	if err != nil {
		h.refuse(w, r, &p, teamInvitationsURL, err)
		return
	}
	if token != "" {
		h.logEmailOff(r.Context(), "teammate invitation (resend)", inv.Email)
		h.handOver(w, r, "/team", "invitation-relink", onceInvitation, token)
		return
	}
	setFlash(w, "invitation-resent")
	redirect(w, r, teamInvitationsURL)
}

func (h *Handler) revokeTeamInvitation(w http.ResponseWriter, r *http.Request, p account.Principal) {
	if err := h.accounts.RevokeTeamInvitation(r.Context(), p, r.PathValue("id")); err != nil {
		h.refuse(w, r, &p, teamInvitationsURL, err)
		return
	}
	setFlash(w, "invitation-revoked")
	redirect(w, r, teamInvitationsURL)
}

func (h *Handler) changeTeammateRole(w http.ResponseWriter, r *http.Request, p account.Principal) {
	if err := r.ParseForm(); err != nil {
		h.errorPage(w, r, &p, errBadForm)
		return
	}
	if err := h.accounts.ChangeRole(r.Context(), p, r.PathValue("userId"), r.PostForm.Get("role")); err != nil {
		h.refuse(w, r, &p, "/team", err)
		return
	}
	setFlash(w, "role-changed")
	redirect(w, r, "/team")
}

func (h *Handler) removeTeammate(w http.ResponseWriter, r *http.Request, p account.Principal) {
	if err := h.accounts.RemoveTeammate(r.Context(), p, r.PathValue("userId")); err != nil {
		h.refuse(w, r, &p, "/team", err)
		return
	}
	setFlash(w, "teammate-removed")
	redirect(w, r, "/team")
}

type auditData struct {
	Entries       []account.AuditEntry
	Action, Actor string
	Next          string
}

// auditLog is the account's audit log (owners and admins), filtered by
// action family and actor, newest first, a page at a time.
func (h *Handler) auditLog(w http.ResponseWriter, r *http.Request, p account.Principal) {
	q := r.URL.Query()
	d := auditData{Action: q.Get("action"), Actor: q.Get("actor")}
	list, err := h.accounts.AuditLog(r.Context(), p, account.AuditFilter{Action: d.Action, Actor: d.Actor, Before: q.Get("before"), Limit: 100})
	if err != nil {
		h.errorPage(w, r, &p, err)
		return
	}
	d.Entries = list
	if len(list) == 100 {
		nq := url.Values{"before": {list[len(list)-1].ID}, "action": {d.Action}, "actor": {d.Actor}}
		d.Next = "/settings/audit?" + nq.Encode()
	}
	h.render(w, r, http.StatusOK, "audit", view{Title: "Audit log", P: &p, Section: "audit", Data: d})
}
