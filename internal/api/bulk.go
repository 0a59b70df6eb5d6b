package api

import (
	"net/http"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
	"taskjuice/internal/engine"
)

// startBulk records a bulk action on runs: the runs named, or every run
// the filter matches; it is worked through in the background.
func (h *Handler) startBulk(w http.ResponseWriter, r *http.Request, p account.Principal) {
	ws, ok := h.builder(w, r, p, "runs")
	if !ok {
		return
	}
	var in struct {
		Action engine.BulkAction `json:"action"`
		RunIDs []string          `json:"runIds"`
		Filter *struct {
			Status   string             `json:"status"`
			Reason   string             `json:"reason"`
			ID       string             `json:"id"`
			Workflow string             `json:"workflow"`
			Source   string             `json:"source"`
			Error    string             `json:"error"`
			From     string             `json:"from"`
			To       string             `json:"to"`
			Failure  *engine.FailureKey `json:"failure"`
		} `json:"filter"`
	}
	if err := decode(w, r, &in); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	if (in.Filter == nil) == (len(in.RunIDs) == 0) {
		writeError(w, r, h.log, apperr.Invalid("runIds", `Send either "runIds" or a "filter"`))
		return
	}
	var filter *engine.ListFilter
	if in.Filter != nil {
		fl := in.Filter
		vals := map[string]string{"status": fl.Status, "reason": fl.Reason, "id": fl.ID, "workflow": fl.Workflow, "source": fl.Source, "error": fl.Error, "from": fl.From, "to": fl.To}
		f, err := engine.FilterFromQuery(func(k string) string { return vals[k] })
		if err != nil {
			writeError(w, r, h.log, err)
			return
		}
		f.Failure = in.Filter.Failure
		filter = &f
	}
	job, err := h.engine.StartBulk(r.Context(), ws.ID, p.User.ID, in.Action, in.RunIDs, filter)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"job": job})
}

// getBulk is a bulk action and how far it got.
func (h *Handler) getBulk(w http.ResponseWriter, r *http.Request, p account.Principal) {
	ws, ok := h.workspace(w, r, p)
	if !ok {
		return
	}
	job, err := h.engine.Bulk(r.Context(), ws.ID, r.PathValue("id"))
	if err != nil {
		writeError(w, r, h.log, apperr.Explain(err, "There is no such bulk action in this workspace."))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"job": job})
}

// listFailures is the failed-runs inbox: failed runs not yet retried or
// replayed, grouped by workflow, step and error code.
func (h *Handler) listFailures(w http.ResponseWriter, r *http.Request, p account.Principal) {
	ws, ok := h.workspace(w, r, p)
	if !ok {
		return
	}
	groups, err := h.engine.FailureGroups(r.Context(), ws.ID)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"groups": nonNil(groups)})
}
