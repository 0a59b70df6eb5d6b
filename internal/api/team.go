package api

import (
	"net/http"
	"time"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
	"taskjuice/internal/authn"
)

// The agency's team: teammate invitations, role changes and removals, for
// owners and admins (members get 403).

func (h *Handler) byEmail() bool { return h.emailOn != nil && h.emailOn() }

// invitationAnswer is an invitation, with its sign-up link when email is
// off (shown this once; only its hash is kept).
func (h *Handler) invitationAnswer(inv account.Invitation, token string) map[string]any {
	out := map[string]any{"invitation": inv}
	if token != "" {
		out["link"] = h.baseURL + account.InvitationPath(token)
	}
	return out
}

func (h *Handler) listTeamInvitations(w http.ResponseWriter, r *http.Request, p account.Principal) {
	list, err := h.accounts.TeamInvitations(r.Context(), p)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"invitations": nonNil(list)})
}

func (h *Handler) inviteTeammate(w http.ResponseWriter, r *http.Request, p account.Principal) {
	var in struct {
		Email string `json:"email"`
		Role  string `json:"role"`
	}
	if err := decode(w, r, &in); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	inv, token, err := h.accounts.InviteTeammate(r.Context(), p, in.Email, in.Role, h.byEmail())
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusCreated, h.invitationAnswer(inv, token))
}

func (h *Handler) resendTeamInvitation(w http.ResponseWriter, r *http.Request, p account.Principal) {
	inv, token, err := h.accounts.ResendTeamInvitation(r.Context(), p, r.PathValue("id"), h.byEmail())
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, h.invitationAnswer(inv, token))
}

func (h *Handler) revokeTeamInvitation(w http.ResponseWriter, r *http.Request, p account.Principal) {
	if err := h.accounts.RevokeTeamInvitation(r.Context(), p, r.PathValue("id")); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) changeTeammateRole(w http.ResponseWriter, r *http.Request, p account.Principal) {
	var in struct {
		Role string `json:"role"`
	}
	if err := decode(w, r, &in); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	if err := h.accounts.ChangeRole(r.Context(), p, r.PathValue("userId"), in.Role); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) removeTeammate(w http.ResponseWriter, r *http.Request, p account.Principal) {
	if err := h.accounts.RemoveTeammate(r.Context(), p, r.PathValue("userId")); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// listAuditLog is the account's audit log, newest first (owners and
// admins), filtered by action (or a family such as "teammate."), actor
// email and time, a page at a time (before: the last entry's id).
func (h *Handler) listAuditLog(w http.ResponseWriter, r *http.Request, p account.Principal) {
	q := r.URL.Query()
	f := account.AuditFilter{Action: q.Get("action"), Actor: q.Get("actor"), Before: q.Get("before")}
	for _, t := range []struct {
		name string
		to   *time.Time
	}{{"from", &f.From}, {"to", &f.To}} {
		if v := q.Get(t.name); v != "" {
			at, err := time.Parse(time.RFC3339, v)
			if err != nil {
				writeError(w, r, h.log, apperr.Invalid(t.name, t.name+" must be a time such as 2026-12-01T00:00:00Z"))
				return
			}
			*t.to = at
		}
	}
	list, err := h.accounts.AuditLog(r.Context(), p, f)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"entries": nonNil(list)})
}

// listSessions lists the caller's own sign-in sessions (the one a browser
// asks from is marked current).
func (h *Handler) listSessions(w http.ResponseWriter, r *http.Request, p account.Principal) {
	current := ""
	if c, err := r.Cookie(authn.SessionCookie); err == nil {
		current = c.Value
	}
	list, err := h.accounts.Sessions(r.Context(), p.User.ID, current)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"sessions": list})
}

// endSession signs one of the caller's sessions out; another person's is
// not found.
func (h *Handler) endSession(w http.ResponseWriter, r *http.Request, p account.Principal) {
	if err := h.accounts.EndSession(r.Context(), p.User.ID, r.PathValue("id")); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
