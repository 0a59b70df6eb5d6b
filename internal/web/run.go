package web

import (
	"context"
	"encoding/json"
	"net/http"

	"taskjuice/internal/apperr"
	"taskjuice/internal/engine"
	"taskjuice/internal/workflow"
)

type runData struct {
	Run        engine.Run
	Workflow   workflow.Workflow
	Steps      []stepView
	Total      int
	Payload    string
	Connection *connectionRow
	Base       string
	Error      string
}

type stepView struct {
	engine.Step
	Name   string
	Input  string
	Output string
}

func pretty(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return string(raw)
	}
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}

// runDetail is /{ws}/monitoring/workflow-runs/{workflowId}/{runId}.
func (h *Handler) runDetail(w http.ResponseWriter, r *http.Request, v view) {
	h.renderRun(w, r, v, http.StatusOK, "")
}

func (h *Handler) renderRun(w http.ResponseWriter, r *http.Request, v view, status int, msg string) {
	ctx := r.Context()
	run, err := h.Engine.Get(ctx, v.Workspace.ID, r.PathValue("runId"))
	if err == nil && run.WorkflowID != r.PathValue("workflowId") {
		err = apperr.ErrNotFound
	}
	if err != nil {
		err = apperr.Explain(err, "There is no such run in this workspace.")
		h.errorPage(w, r, v.P, err)
		return
	}
	wf, err := h.Workflows.Get(ctx, *v.Workspace, run.WorkflowID)
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	steps, err := h.Engine.Steps(ctx, v.Workspace.ID, run.ID)
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	d := runData{Run: run, Workflow: wf, Payload: pretty(run.TriggerPayload), Error: msg,
		Base: "/" + v.Workspace.Slug + "/monitoring/workflow-runs/" + run.WorkflowID + "/" + run.ID}
	if g, err := h.Workflows.GraphOf(ctx, run.VersionID); err == nil {
		d.Total = len(g.Nodes)
		names := map[string]string{}
		for _, n := range g.Nodes {
			names[n.ID] = n.Name
			if names[n.ID] == "" {
				names[n.ID] = n.Kind.Label()
			}
		}
		for _, s := range steps {
			d.Steps = append(d.Steps, stepView{Step: s, Name: names[engine.EntryNode(s.NodeID)], Input: pretty(s.Input), Output: pretty(s.Output)})
		}
	}
	if run.PausedConnectionID != "" {
		if c, err := h.Connections.Get(ctx, *v.Workspace, run.PausedConnectionID); err == nil {
			d.Connection = &connectionRow{Connection: c, AppName: h.appName(c.AppKey)}
		}
	}
	v.Title, v.Section, v.Data = "Run "+short(run.ID), "runs", d
	h.render(w, r, status, "run", v)
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// runAction is Resume, Pause, Cancel, Replay, Approve or Reject from the
// run page.
func (h *Handler) runAction(w http.ResponseWriter, r *http.Request, v view) {
	ctx, id, actor := r.Context(), r.PathValue("runId"), v.P.User.ID
	if err := r.ParseForm(); err != nil {
		h.errorPage(w, r, v.P, errBadForm)
		return
	}
	base := "/" + v.Workspace.Slug + "/monitoring/workflow-runs/" + r.PathValue("workflowId") + "/"
	var err error
	switch r.PathValue("action") {
	case "resume":
		err = h.Engine.Resume(ctx, v.Workspace.ID, id, actor, func(ctx context.Context, cid string) (string, error) {
			c, err := h.Connections.Get(ctx, *v.Workspace, cid)
			return string(c.Status), err
		})
	case "pause":
		err = h.Engine.Pause(ctx, v.Workspace.ID, id, actor)
	case "cancel":
		err = h.Engine.Cancel(ctx, v.Workspace.ID, id, actor)
	case "approve", "reject":
		err = h.Engine.Decide(ctx, v.Workspace.ID, id, actor, r.PathValue("action") == "approve", r.PostForm.Get("comment"))
	case "replay":
		var newID string
		if newID, err = h.Engine.Replay(ctx, v.Workspace.ID, id, actor); err == nil {
			setFlash(w, "replayed")
			redirect(w, r, base+newID)
			return
		}
	default:
		h.notFound(w, r)
		return
	}
	if err != nil {
		h.refuse(w, r, v.P, base+id, err)
		return
	}
	setFlash(w, "run-"+r.PathValue("action"))
	redirect(w, r, base+id)
}
