package web

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"taskjuice/internal/engine"
)

type runsData struct {
	// Held groups the runs paused for reauth by connection, on the "Paused
	// for reauth" view, so those whose connection is back can be resumed.
	Held     []heldGroup
	Runs     []engine.RunRow
	Status   string
	Reason   string
	IDPrefix string
	Next     string
	Statuses []engine.Status
	Chips    []runsChip
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

func (h *Handler) runs(w http.ResponseWriter, r *http.Request, v view) {
	q := r.URL.Query()
	d := runsData{Status: q.Get("status"), Reason: q.Get("reason"), IDPrefix: q.Get("id"),
		Statuses: []engine.Status{engine.StatusPending, engine.StatusRunning, engine.StatusWaiting, engine.StatusPaused, engine.StatusCompleted, engine.StatusFailed, engine.StatusCancelled}}
	valid := d.Status == ""
	for _, s := range d.Statuses {
		valid = valid || string(s) == d.Status
	}
	if !valid {
		d.Status = ""
	}
	if d.Reason != "" && d.Reason != string(engine.PauseReauth) {
		d.Reason = ""
	}
	list, err := h.Engine.List(r.Context(), v.Workspace.ID, engine.ListFilter{
		Status: engine.Status(d.Status), PauseReason: engine.PauseReason(d.Reason), IDPrefix: d.IDPrefix, Before: q.Get("before"), Limit: runsPage,
	})
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	d.Runs = list
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
		for k, val := range map[string]string{"status": d.Status, "reason": d.Reason, "id": d.IDPrefix} {
			if val != "" {
				nq.Set(k, val)
			}
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
		d.Chips = append(d.Chips, runsChip{Label: c.label, Href: href, Current: c.status == d.Status && c.reason == d.Reason && d.IDPrefix == ""})
	}
	v.Title, v.Data = "Workflow Runs · "+v.Workspace.Name, d
	h.render(w, r, http.StatusOK, "runs", v)
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
