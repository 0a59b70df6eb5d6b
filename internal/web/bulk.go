package web

import (
	"net/http"
	"net/url"

	"taskjuice/internal/apperr"
	"taskjuice/internal/engine"
)

// bulkRuns starts a bulk action from the runs list: on the runs ticked, or
// on every run matching the list's filter ("all").
func (h *Handler) bulkRuns(w http.ResponseWriter, r *http.Request, v view) {
	if err := r.ParseForm(); err != nil {
		h.errorPage(w, r, v.P, errBadForm)
		return
	}
	pf := r.PostForm
	back := "/" + v.Workspace.Slug + "/monitoring/workflow-runs"
	q := url.Values{}
	for _, k := range runFilterKeys {
		if val := pf.Get(k); val != "" {
			q.Set(k, val)
		}
	}
	if len(q) > 0 {
		back += "?" + q.Encode()
	}
	var filter *engine.ListFilter
	var runs []string
	if pf.Get("all") != "" {
		f, err := engine.FilterFromQuery(pf.Get)
		if err != nil {
			h.refuse(w, r, v.P, back, err)
			return
		}
		filter = &f
	} else {
		runs = pf["run"]
	}
	job, err := h.Engine.StartBulk(r.Context(), v.Workspace.ID, v.P.User.ID, engine.BulkAction(pf.Get("action")), runs, filter)
	if err != nil {
		h.refuse(w, r, v.P, back, err)
		return
	}
	redirect(w, r, "/"+v.Workspace.Slug+"/monitoring/bulk-actions/"+job.ID)
}

type bulkData struct {
	Job      engine.BulkJob
	Progress int // runs done or skipped
	Label    string
}

var bulkLabels = map[engine.BulkAction]string{engine.BulkResume: "Resume", engine.BulkRetry: "Retry from failed step", engine.BulkReplay: "Replay", engine.BulkCancel: "Cancel"}

// bulkJob is a bulk action's page: its progress while it runs, then its
// summary.
func (h *Handler) bulkJob(w http.ResponseWriter, r *http.Request, v view) {
	job, err := h.Engine.Bulk(r.Context(), v.Workspace.ID, r.PathValue("id"))
	if err != nil {
		h.errorPage(w, r, v.P, apperr.Explain(err, "There is no such bulk action in this workspace."))
		return
	}
	v.Title, v.Section = bulkLabels[job.Action]+" · Bulk action", "runs"
	v.Data = bulkData{Job: job, Progress: job.Done + job.Skipped, Label: bulkLabels[job.Action]}
	h.render(w, r, http.StatusOK, "bulk", v)
}
