package web

import "net/http"

func (h *Handler) notifications(w http.ResponseWriter, r *http.Request, v view) {
	list, err := h.Notify.List(r.Context(), v.Workspace.ID, v.P.User.ID, 100)
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	v.Title, v.Data = "Notifications · "+v.Workspace.Name, list
	h.render(w, r, http.StatusOK, "notifications", v)
}

// markRead marks one notification read, or all of the workspace's.
func (h *Handler) markRead(w http.ResponseWriter, r *http.Request, v view) {
	if err := h.Notify.MarkRead(r.Context(), v.Workspace.ID, v.P.User.ID, r.PathValue("id")); err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	setFlash(w, "marked-read")
	redirect(w, r, "/"+v.Workspace.Slug+"/notifications")
}
