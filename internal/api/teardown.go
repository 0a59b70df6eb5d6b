package api

import (
	"net/http"
	"time"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
)

// confirmBody is what a deletion is confirmed with.
type confirmBody struct {
	Confirm string `json:"confirm"`
}

func (h *Handler) readConfirm(w http.ResponseWriter, r *http.Request, what string) (string, bool) {
	var in confirmBody
	if err := decode(w, r, &in); err != nil {
		writeError(w, r, h.log, err)
		return "", false
	}
	if in.Confirm == "" {
		writeError(w, r, h.log, apperr.Invalid("confirm", "Field \"confirm\" is required: "+what))
		return "", false
	}
	return in.Confirm, true
}

// workspaceContents says what deleting the workspace would remove.
func (h *Handler) workspaceContents(w http.ResponseWriter, r *http.Request, p account.Principal) {
	ws, err := h.accounts.WorkspaceBySlug(r.Context(), p, r.PathValue("slug"))
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	c, err := h.accounts.Contents(r.Context(), p, ws)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"contents": c, "summary": c.Summary()})
}

// deleteWorkspace deletes the workspace, confirmed by its slug; its
// connections are revoked at their apps first.
func (h *Handler) deleteWorkspace(w http.ResponseWriter, r *http.Request, p account.Principal) {
	ws, err := h.accounts.WorkspaceBySlug(r.Context(), p, r.PathValue("slug"))
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	confirm, ok := h.readConfirm(w, r, "the workspace's slug, "+ws.Slug)
	if !ok {
		return
	}
	rep, err := h.teardown.DeleteWorkspace(r.Context(), p, ws, confirm)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

// exportAccount returns the account's data as a JSON archive without
// secrets (owners and admins), recorded in the audit log.
func (h *Handler) exportAccount(w http.ResponseWriter, r *http.Request, p account.Principal) {
	now := time.Now().UTC()
	a, err := h.teardown.Export(r.Context(), p, now)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	w.Header().Set("Content-Disposition", `attachment; filename="taskjuice-export-`+now.Format("2006-01-02")+`.json"`)
	writeJSON(w, http.StatusOK, a)
}

// deleteAccount deletes the account, confirmed by its name (the owner).
func (h *Handler) deleteAccount(w http.ResponseWriter, r *http.Request, p account.Principal) {
	if err := account.MayDeleteAccount(p); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	confirm, ok := h.readConfirm(w, r, "the account's name, "+p.AccountName)
	if !ok {
		return
	}
	revs, err := h.teardown.DeleteAccount(r.Context(), p, confirm)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"deleted": true, "revocations": revs})
}
