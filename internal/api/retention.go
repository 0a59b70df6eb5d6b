package api

import (
	"net/http"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
)

// getRetention is how long the workspace keeps its finished runs, and what
// the last pruning pass removed.
func (h *Handler) getRetention(w http.ResponseWriter, r *http.Request, p account.Principal) {
	ws, ok := h.workspace(w, r, p)
	if !ok {
		return
	}
	h.writeRetention(w, r, ws.ID)
}

// putRetention sets it: owners and admins (who manage workspaces) only,
// since pruning deletes run data.
func (h *Handler) putRetention(w http.ResponseWriter, r *http.Request, p account.Principal) {
	ws, ok := h.workspace(w, r, p)
	if !ok {
		return
	}
	if !p.Can(account.CapManageWorkspaces) {
		writeError(w, r, h.log, apperr.Forbidden("Tenant admin required"))
		return
	}
	var in struct {
		Days               int `json:"days"`
		MaxRunsPerWorkflow int `json:"maxRunsPerWorkflow"`
	}
	if err := decode(w, r, &in); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	if err := h.engine.SetRetention(r.Context(), ws.ID, in.Days, in.MaxRunsPerWorkflow); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	h.writeRetention(w, r, ws.ID)
}

func (h *Handler) writeRetention(w http.ResponseWriter, r *http.Request, workspaceID string) {
	ret, err := h.engine.Retention(r.Context(), workspaceID)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"retention": ret})
}
