package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"taskjuice/internal/apperr"
	"taskjuice/internal/engine"
	"taskjuice/internal/workflow"
)

type runsData struct {
	// Held groups the runs paused for reauth by connection, on the "Paused
	// for reauth" view, so those whose connection is back can be resumed.
	Held     []heldGroup
	Runs     []engine.RunRow
	Status   string
	Reason   string
	IDPrefix string
	// The search: workflow, source, error code and creation dates, kept in
	// the URL so a filter can be shared.
	Workflow, Source, ErrorCode, From, To string
	// A value in the trigger payload or a step's output: the field (as an
	// expression names it), equals or contains, the value.
	Field, Match, Value string
	// Unindexed counts recent runs a value search cannot see yet.
	Unindexed int
	Workflows []workflow.Workflow
	Error     string
	// Query is the filter as query parameters, for the next page and the
	// bulk form.
	Query    url.Values
	Next     string
	Statuses []engine.Status
	Chips    []runsChip
	// Matching is how many runs the filter matches, for "all N matching"
	// (over MaxBulkRuns: more than that).
	Matching int
	TooMany  bool
}

type heldGroup struct {
	Connection connectionRow
	Runs       int
}

// resumeHeld is "Resume all": every run held for reauthorization on a
// connection that is active again.
func (h *Handler) resumeHeld(w http.ResponseWriter, r *http.Request, v view) {
	n, err := h.Engine.ResumeHeld(r.Context(), v.Workspace.ID, r.PathValue("id"), v.P.User.ID, func(ctx context.Context, id string) (string, error) {
		c, err := h.Connections.Get(ctx, *v.Workspace, id)
		return string(c.Status), err
	})
	if err != nil {
		h.refuse(w, r, v.P, h.connectionURL(v, r.PathValue("id")), err)
		return
	}
	switch n {
	case 0:
		setFlash(w, "resumed-none")
	case 1:
		setFlash(w, "resumed-one")
	default:
		setFlash(w, "resumed-all")
	}
	redirect(w, r, "/"+v.Workspace.Slug+"/monitoring/workflow-runs?reason=reauth&status=paused")
}

type runsChip struct {
	Label, Href string
	Current     bool
}

const runsPage = 50

// countShown is how far the runs list counts the runs a filter matches.
const countShown = 10000

// runFilterKeys are the runs list's filter parameters.
var runFilterKeys = []string{"status", "reason", "id", "workflow", "source", "error", "from", "to", "field", "match", "value"}

func (h *Handler) runs(w http.ResponseWriter, r *http.Request, v view) {
	q := r.URL.Query()
	d := runsData{Status: q.Get("status"), Reason: q.Get("reason"), IDPrefix: q.Get("id"), Workflow: q.Get("workflow"), Source: q.Get("source"),
		ErrorCode: q.Get("error"), From: q.Get("from"), To: q.Get("to"), Field: q.Get("field"), Match: q.Get("match"), Value: q.Get("value"), Query: url.Values{},
		Statuses: []engine.Status{engine.StatusPending, engine.StatusRunning, engine.StatusWaiting, engine.StatusPaused, engine.StatusCompleted, engine.StatusFailed, engine.StatusCancelled}}
	filter, err := engine.FilterFromQuery(q.Get)
	if err != nil {
		// A filter that cannot be read (a hand-edited link) is said so, and
		// the list shows everything.
		d.Error, filter = err.Error(), engine.ListFilter{}
		var ae *apperr.Error
		if errors.As(err, &ae) {
			d.Error = ae.Message
		}
		d.Status, d.Reason, d.IDPrefix, d.Workflow, d.Source, d.ErrorCode, d.From, d.To = "", "", "", "", "", "", "", ""
		d.Field, d.Match, d.Value = "", "", ""
	}
	for _, k := range runFilterKeys {
		if val := q.Get(k); val != "" && d.Error == "" {
			d.Query.Set(k, val)
		}
	}
	if d.Workflows, err = h.Workflows.List(r.Context(), *v.Workspace); err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	filter.Before, filter.Limit = q.Get("before"), runsPage
	list, err := h.Engine.List(r.Context(), v.Workspace.ID, filter)
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	d.Runs = list
	if filter.Value != nil {
		// Runs not yet indexed cannot match a value search; say so.
		if d.Unindexed, err = h.Engine.Unindexed(r.Context(), v.Workspace.ID); err != nil {
			h.errorPage(w, r, v.P, err)
			return
		}
	}
	switch {
	case len(list) > 0 && len(list) < runsPage && q.Get("before") == "":
		d.Matching = len(list) // all of them are on this page
	case len(list) > 0:
		// Counted up to countShown, so a page over a million runs stays
		// quick: beyond it the page says "10000+" (a bulk action still
		// takes up to MaxBulkRuns).
		filter.Before = ""
		n, err := h.Engine.CountRuns(r.Context(), v.Workspace.ID, filter, countShown)
		if err != nil {
			h.errorPage(w, r, v.P, err)
			return
		}
		d.Matching, d.TooMany = min(n, countShown), n > countShown
	}
	if d.Reason == string(engine.PauseReauth) {
		seen := map[string]int{}
		for _, run := range list {
			if run.PausedConnectionID == "" {
				continue
			}
			if i, ok := seen[run.PausedConnectionID]; ok {
				d.Held[i].Runs++
				continue
			}
			c, err := h.Connections.Get(r.Context(), *v.Workspace, run.PausedConnectionID)
			if err != nil {
				continue
			}
			seen[run.PausedConnectionID] = len(d.Held)
			d.Held = append(d.Held, heldGroup{Connection: connectionRow{Connection: c, AppName: h.appName(c.AppKey)}, Runs: 1})
		}
	}
	base := "/" + v.Workspace.Slug + "/monitoring/workflow-runs"
	if len(list) == runsPage {
		nq := url.Values{"before": {list[len(list)-1].ID}}
		for k, vals := range d.Query {
			nq[k] = vals
		}
		d.Next = base + "?" + nq.Encode()
	}
	for _, c := range []struct{ label, status, reason string }{
		{"All", "", ""}, {"Paused for reauth", "paused", "reauth"}, {"Failed", "failed", ""}, {"Waiting", "waiting", ""}, {"Paused", "paused", ""},
	} {
		href := base
		cq := url.Values{}
		if c.status != "" {
			cq.Set("status", c.status)
		}
		if c.reason != "" {
			cq.Set("reason", c.reason)
		}
		if len(cq) > 0 {
			href += "?" + cq.Encode()
		}
		d.Chips = append(d.Chips, runsChip{Label: c.label, Href: href, Current: c.status == d.Status && c.reason == d.Reason && len(d.Query) == countSet(d.Status, d.Reason)})
	}
	v.Title, v.Data = "Workflow Runs · "+v.Workspace.Name, d
	h.render(w, r, http.StatusOK, "runs", v)
}

// countSet counts the non-empty values.
func countSet(vals ...string) int {
	n := 0
	for _, v := range vals {
		if v != "" {
			n++
		}
	}
	return n
}

// duration is how long a run took (or has taken so far).
func duration(r engine.RunRow) string {
	if r.StartedAt == nil {
		return "—"
	}
	end := time.Now()
	if r.FinishedAt != nil {
		end = *r.FinishedAt
	}
	d := end.Sub(*r.StartedAt)
	switch {
	case d < time.Second:
		return fmt.Sprintf("%d ms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm %ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh %dm", int(d.Hours()), int(d.Minutes())%60)
}
