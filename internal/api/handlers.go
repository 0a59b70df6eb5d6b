package api

import (
	"net/http"
	"strings"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
)

type meResponse struct {
	User        account.User `json:"user"`
	Role        account.Role `json:"role"`
	AccountID   string       `json:"accountId"`
	AccountName string       `json:"accountName"`
	WorkspaceID string       `json:"workspaceId,omitempty"`
}

func (h *Handler) me(w http.ResponseWriter, r *http.Request, p account.Principal) {
	writeJSON(w, http.StatusOK, meResponse{User: p.User, Role: p.Role, AccountID: p.AccountID, AccountName: p.AccountName, WorkspaceID: p.WorkspaceID})
}

func (h *Handler) getAccount(w http.ResponseWriter, r *http.Request, p account.Principal) {
	if !p.Role.IsStaff() {
		writeError(w, r, h.log, apperr.Forbidden("Clients cannot read the agency's account"))
		return
	}
	a, err := h.accounts.Account(r.Context(), p.AccountID)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, a)
}

func (h *Handler) patchAccount(w http.ResponseWriter, r *http.Request, p account.Principal) {
	var in struct {
		Name               *string `json:"name"`
		ContactEmail       *string `json:"contactEmail"`
		SupportEmail       *string `json:"supportEmail"`
		DefaultTimezone    *string `json:"defaultTimezone"`
		AuditRetentionDays *int    `json:"auditRetentionDays"`
		AlertEmails        *bool   `json:"alertEmails"`
	}
	if err := decode(w, r, &in); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	c := account.SettingsChange{Name: in.Name, ContactEmail: in.ContactEmail, SupportEmail: in.SupportEmail,
		DefaultTimezone: in.DefaultTimezone, AuditRetentionDays: in.AuditRetentionDays, AlertEmails: in.AlertEmails}
	if c.Empty() {
		writeError(w, r, h.log, apperr.Invalid("name", "Send at least one of \"name\", \"contactEmail\", \"supportEmail\", \"defaultTimezone\", \"auditRetentionDays\" or \"alertEmails\""))
		return
	}
	a, err := h.accounts.UpdateSettings(r.Context(), p, c)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, a)
}

func (h *Handler) transferOwnership(w http.ResponseWriter, r *http.Request, p account.Principal) {
	var in struct {
		UserID string `json:"userId"`
	}
	if err := decode(w, r, &in); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	if strings.TrimSpace(in.UserID) == "" {
		writeError(w, r, h.log, apperr.Invalid("userId", "Field \"userId\" is required: the staff member who becomes owner"))
		return
	}
	if err := h.accounts.TransferOwnership(r.Context(), p, in.UserID); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) listStaff(w http.ResponseWriter, r *http.Request, p account.Principal) {
	staff, err := h.accounts.Staff(r.Context(), p)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"staff": nonNil(staff)})
}

func (h *Handler) listWorkspaces(w http.ResponseWriter, r *http.Request, p account.Principal) {
	ws, err := h.accounts.Workspaces(r.Context(), p)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"workspaces": nonNil(ws)})
}

func (h *Handler) createWorkspace(w http.ResponseWriter, r *http.Request, p account.Principal) {
	var in struct {
		Name string `json:"name"`
		Slug string `json:"slug"`
	}
	if err := decode(w, r, &in); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	ws, err := h.accounts.CreateWorkspace(r.Context(), p, in.Name, in.Slug)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	w.Header().Set("Location", "/api/v1/workspaces/"+ws.Slug)
	writeJSON(w, http.StatusCreated, ws)
}

type slugAvailability struct {
	Slug      string `json:"slug"`
	Available bool   `json:"available"`
	Message   string `json:"message"`
}

// slugAvailability answers as a slug is typed: "Available", or the message
// the form would show on submit.
func (h *Handler) slugAvailability(w http.ResponseWriter, r *http.Request, p account.Principal) {
	slug := r.URL.Query().Get("slug")
	err := h.accounts.CheckSlug(r.Context(), p, slug)
	if err == nil {
		writeJSON(w, http.StatusOK, slugAvailability{Slug: slug, Available: true, Message: "Available"})
		return
	}
	e, ok := apperr.As(err)
	if !ok {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, slugAvailability{Slug: slug, Available: false, Message: e.Message})
}

func (h *Handler) getWorkspace(w http.ResponseWriter, r *http.Request, p account.Principal) {
	ws, err := h.accounts.WorkspaceBySlug(r.Context(), p, r.PathValue("slug"))
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, ws)
}

// patchWorkspace renames a workspace: its name, and its slug when given
// (the old address of its pages redirects for a while).
func (h *Handler) patchWorkspace(w http.ResponseWriter, r *http.Request, p account.Principal) {
	ws, err := h.accounts.WorkspaceBySlug(r.Context(), p, r.PathValue("slug"))
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	// What is left out stays as it is.
	in := struct {
		Name string `json:"name"`
		Slug string `json:"slug"`
	}{Name: ws.Name, Slug: ws.Slug}
	if err := decode(w, r, &in); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	out, err := h.accounts.RenameWorkspace(r.Context(), p, ws, in.Name, in.Slug)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *Handler) listMembers(w http.ResponseWriter, r *http.Request, p account.Principal) {
	ws, err := h.accounts.WorkspaceBySlug(r.Context(), p, r.PathValue("slug"))
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	members, err := h.accounts.Members(r.Context(), p, ws)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	invitations, err := h.accounts.PendingInvitations(r.Context(), p, ws)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"members": nonNil(members), "invitations": nonNil(invitations)})
}

func (h *Handler) listTokens(w http.ResponseWriter, r *http.Request, p account.Principal) {
	toks, err := h.accounts.APITokens(r.Context(), p)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"tokens": nonNil(toks)})
}

type createdToken struct {
	// Token is the secret, shown this once.
	Token    string           `json:"token"`
	APIToken account.APIToken `json:"apiToken"`
}

func (h *Handler) createToken(w http.ResponseWriter, r *http.Request, p account.Principal) {
	var in struct {
		Name string `json:"name"`
	}
	if err := decode(w, r, &in); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	secret, tok, err := h.accounts.CreateAPIToken(r.Context(), p, in.Name)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusCreated, createdToken{Token: secret, APIToken: tok})
}

func (h *Handler) revokeToken(w http.ResponseWriter, r *http.Request, p account.Principal) {
	if err := h.accounts.RevokeAPIToken(r.Context(), p, r.PathValue("id")); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// nonNil makes an empty list encode as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
