package web

import (
	"net/http"

	"taskjuice/internal/account"
)

func (h *Handler) portal(w http.ResponseWriter, r *http.Request, p account.Principal) {
	ws, err := h.accounts.WorkspaceByID(r.Context(), p, p.WorkspaceID)
	if err != nil {
		h.errorPage(w, r, &p, err)
		return
	}
	h.render(w, r, http.StatusOK, "portal", view{Title: ws.Name, P: &p, Workspace: &ws, Section: "portal"})
}
