package web

import (
	"errors"
	"net/http"
	"net/url"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
	"taskjuice/internal/engine"
)

// The runs of every client (workspace) of the account in one list, at
// /runs: the same filters as a workspace's runs list, and "client" to keep
// one. Actions on runs stay on each workspace's list.

type allRunsData struct {
	runsData
	Client  string
	Clients []account.Workspace
	// Names maps a workspace id to its client's name and slug.
	Names map[string]account.Workspace
}

// allRunsKeys are the filter parameters of the list across clients.
var allRunsKeys = append([]string{"client"}, runFilterKeys...)

func (h *Handler) allRuns(w http.ResponseWriter, r *http.Request, p account.Principal) {
	q := r.URL.Query()
	clients, err := h.accounts.Workspaces(r.Context(), p)
	if err != nil {
		h.errorPage(w, r, &p, err)
		return
	}
	d := allRunsData{Client: q.Get("client"), Clients: clients, Names: map[string]account.Workspace{}}
	d.Field, d.Match, d.Value = q.Get("field"), q.Get("match"), q.Get("value")
	d.Status, d.Reason, d.Source, d.ErrorCode, d.From, d.To = q.Get("status"), q.Get("reason"), q.Get("source"), q.Get("error"), q.Get("from"), q.Get("to")
	d.Statuses = []engine.Status{engine.StatusPending, engine.StatusRunning, engine.StatusWaiting, engine.StatusPaused, engine.StatusCompleted, engine.StatusFailed, engine.StatusCancelled}
	var ids []string
	for _, ws := range clients {
		d.Names[ws.ID] = ws
		if d.Client == "" || d.Client == ws.Slug {
			ids = append(ids, ws.ID)
		}
	}
	filter, err := engine.FilterFromQuery(q.Get)
	if err == nil && d.Client != "" && len(ids) == 0 {
		err = apperr.Invalid("client", "No client (workspace) of this account has the slug "+d.Client)
	}
	if err != nil {
		d.Error = err.Error()
		var ae *apperr.Error
		if errors.As(err, &ae) {
			d.Error = ae.Message
		}
		h.render(w, r, http.StatusBadRequest, "allruns", view{Title: "Runs", P: &p, Section: "all-runs", Data: d})
		return
	}
	filter.Before, filter.Limit = q.Get("before"), runsPage
	if d.Runs, err = h.Engine.ListAcross(r.Context(), ids, filter); err != nil {
		h.errorPage(w, r, &p, err)
		return
	}
	if len(d.Runs) == runsPage {
		nq := url.Values{"before": {d.Runs[len(d.Runs)-1].ID}}
		for _, k := range allRunsKeys {
			if v := q.Get(k); v != "" {
				nq.Set(k, v)
			}
		}
		d.Next = "/runs?" + nq.Encode()
	}
	h.render(w, r, http.StatusOK, "allruns", view{Title: "Runs", P: &p, Section: "all-runs", Data: d})
}
