package web

import (
	"net/http"

	"taskjuice/internal/engine"
)

// failures is the failed-runs inbox: failures grouped by workflow, step
// and error code, each with one action to retry or replay the group.
func (h *Handler) failures(w http.ResponseWriter, r *http.Request, v view) {
	groups, err := h.Engine.FailureGroups(r.Context(), v.Workspace.ID)
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	v.Title, v.Section, v.Data = "Failures · "+v.Workspace.Name, "failures", groups
	h.render(w, r, http.StatusOK, "failures", v)
}

// failuresBulk retries or replays one group of the inbox, as a bulk job.
func (h *Handler) failuresBulk(w http.ResponseWriter, r *http.Request, v view) {
	if err := r.ParseForm(); err != nil {
		h.errorPage(w, r, v.P, errBadForm)
		return
	}
	pf := r.PostForm
	back := "/" + v.Workspace.Slug + "/monitoring/failures"
	action := engine.BulkAction(pf.Get("action"))
	if action != engine.BulkRetry && action != engine.BulkReplay {
		action = "" // refused by StartBulk with its message
	}
	key := engine.FailureKey{WorkflowID: pf.Get("workflow"), Node: pf.Get("node"), ErrorCode: pf.Get("code")}
	job, err := h.Engine.StartBulk(r.Context(), v.Workspace.ID, v.P.User.ID, action, nil, &engine.ListFilter{Failure: &key})
	if err != nil {
		h.refuse(w, r, v.P, back, err)
		return
	}
	redirect(w, r, "/"+v.Workspace.Slug+"/monitoring/bulk-actions/"+job.ID)
}
