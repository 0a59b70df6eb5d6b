package web

import (
	"context"
	"encoding/json"
	"net/http"

	"taskjuice/internal/apperr"
	"taskjuice/internal/connection"
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
	Hold       *hold
	Base       string
	Error      string
	// Retries are the runs that retried this one from its failed step;
	// OnLive says this run runs the workflow's live version.
	Retries []engine.Run
	OnLive  bool
}

type stepView struct {
	engine.Step
	Name   string
	Input  string
	Output string
	// Shown is the status the step is shown with and ErrMessage its
	// error's sentence, both true for the run as it is now: a step that
	// was held when the run was cancelled shows as stopped, and a held
	// step's error speaks in the past once the run moved on.
	Shown      string
	ErrMessage string
}

// stepNow fills what a step says from the run's current state.
func stepNow(s *stepView, run engine.Run) {
	s.Shown = string(s.Status)
	if run.Status.Terminal() && (s.Status == engine.StepPaused || s.Status == engine.StepWaiting) {
		s.Shown = "stopped"
	}
	if s.Error == nil {
		return
	}
	s.ErrMessage = s.Error.Message
	if s.Error.Code == engine.CodeReauthNeeded && !(run.Status == engine.StatusPaused && run.PauseReason == engine.PauseReauth) {
		s.ErrMessage = "The connection needed to be reconnected; the run was held at this step."
	}
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
			sv := stepView{Step: s, Name: names[engine.EntryNode(s.NodeID)], Input: pretty(s.Input), Output: pretty(s.Output)}
			stepNow(&sv, run)
			d.Steps = append(d.Steps, sv)
		}
	}
	if run.PausedConnectionID != "" {
		if c, err := h.Connections.Get(ctx, *v.Workspace, run.PausedConnectionID); err == nil {
			d.Connection = &connectionRow{Connection: c, AppName: h.appName(c.AppKey)}
		}
	}
	d.OnLive = run.VersionID == wf.ActiveVersionID
	if d.Retries, err = h.Engine.Retries(ctx, v.Workspace.ID, run.ID); err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	d.Hold = holdOf(run, wf, d.Connection)
	if d.Hold != nil && d.Hold.Mended {
		if d.Hold.Kept, err = h.Engine.KeptHeld(ctx, run); err != nil {
			h.errorPage(w, r, v.P, err)
			return
		}
	}
	v.Title, v.Section, v.Data = "Run "+short(run.ID), "runs", d
	h.render(w, r, status, "run", v)
}

// hold is what the run page says about a paused run, derived from the
// run's status and its connection's status as they are now: a run that is
// no longer paused says nothing, one whose connection is back says so.
type hold struct {
	Reauth, Operator bool
	Connection       *connectionRow
	Mended           bool // the connection works again
	Agent            bool // an agent run: it resumes by itself
	Auto             bool // it resumes by itself after the reconnect
	// Kept says why a run whose connection is back stays held: it was
	// reconnected as another account and nobody has decided yet.
	Kept string
}

func holdOf(run engine.Run, wf workflow.Workflow, c *connectionRow) *hold {
	if run.Status != engine.StatusPaused {
		return nil
	}
	switch run.PauseReason {
	case engine.PauseReauth:
		h := &hold{Reauth: true, Connection: c, Agent: run.Kind == engine.KindAgent}
		h.Auto = h.Agent || wf.AutoResumeReauth
		h.Mended = c != nil && c.Status == connection.StatusActive
		return h
	case engine.PauseOperator:
		return &hold{Operator: true}
	}
	return nil
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// runAction is Resume, Pause, Cancel, Replay, Retry from the failed step,
// Approve or Reject from the
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
	case "retry":
		var newID string
		on := engine.RetryVersion(r.PostForm.Get("version"))
		if newID, err = h.Engine.RetryFailed(ctx, v.Workspace.ID, id, actor, on); err == nil {
			setFlash(w, "retried")
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
