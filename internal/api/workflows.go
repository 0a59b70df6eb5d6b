package api

import (
	"fmt"
	"net/http"
	"strings"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
	"taskjuice/internal/workflow"
)

// workflowDetail is a workflow with its live version and its draft (either
// absent when there is none).
type workflowDetail struct {
	Workflow workflow.Workflow `json:"workflow"`
	Live     *workflow.Version `json:"live"`
	Draft    *workflow.Version `json:"draft"`
}

func (h *Handler) listWorkflows(w http.ResponseWriter, r *http.Request, p account.Principal) {
	ws, ok := h.workspace(w, r, p)
	if !ok {
		return
	}
	q := r.URL.Query()
	status := workflow.Status(q.Get("status"))
	switch status {
	case "", workflow.StatusDraft, workflow.StatusPublished, workflow.StatusArchived, workflow.StatusDisabled, workflow.StatusPausedSafety:
	default:
		writeError(w, r, h.log, apperr.Invalid("status", "status must be draft, published, archived, disabled or paused-safety"))
		return
	}
	name := strings.ToLower(strings.TrimSpace(q.Get("name")))
	list, err := h.workflows.List(r.Context(), ws)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	out := []workflow.Workflow{}
	for _, wf := range list {
		if status != "" && wf.Status != status {
			continue
		}
		if name != "" && !strings.Contains(strings.ToLower(wf.Name), name) {
			continue
		}
		out = append(out, wf)
	}
	writeJSON(w, http.StatusOK, map[string]any{"workflows": out})
}

// loadWorkflow reads the {id} of a workflow route; an agent, or another
// workspace's workflow, is not found.
func (h *Handler) loadWorkflow(w http.ResponseWriter, r *http.Request, ws account.Workspace) (workflow.Workflow, bool) {
	wf, err := h.workflows.Get(r.Context(), ws, r.PathValue("id"))
	if err == nil && wf.Type != workflow.TypeWorkflow {
		err = apperr.ErrNotFound
	}
	if err != nil {
		writeError(w, r, h.log, apperr.Explain(err, "There is no such workflow in this workspace."))
		return workflow.Workflow{}, false
	}
	return wf, true
}

// detail answers the workflow with its live version and its draft.
func (h *Handler) detail(w http.ResponseWriter, r *http.Request, ws account.Workspace, wf workflow.Workflow, status int) {
	versions, err := h.workflows.Versions(r.Context(), ws, wf.ID)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	d := workflowDetail{Workflow: wf}
	for i := range versions {
		v := &versions[i]
		switch {
		case v.State == workflow.VersionDraft && d.Draft == nil:
			d.Draft = v
		case v.ID == wf.ActiveVersionID:
			d.Live = v
		}
	}
	writeJSON(w, status, d)
}

func (h *Handler) getWorkflow(w http.ResponseWriter, r *http.Request, p account.Principal) {
	ws, ok := h.workspace(w, r, p)
	if !ok {
		return
	}
	wf, ok := h.loadWorkflow(w, r, ws)
	if !ok {
		return
	}
	h.detail(w, r, ws, wf, http.StatusOK)
}

// workflowInput is the body of a new workflow: as the page's form, plus an
// optional first graph (else a manual trigger and nothing after it).
type workflowInput struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Graph       *workflow.Graph `json:"graph"`
}

func (h *Handler) createWorkflow(w http.ResponseWriter, r *http.Request, p account.Principal) {
	ws, ok := h.builder(w, r, p, "workflows")
	if !ok {
		return
	}
	var in workflowInput
	if err := decode(w, r, &in); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	if err := graphShape(in.Graph); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	wf, err := h.workflows.Create(r.Context(), ws, in.Name, in.Description, in.Graph, p.User.ID)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	w.Header().Set("Location", "/api/v1/workspaces/"+ws.Slug+"/workflows/"+wf.ID)
	h.detail(w, r, ws, wf, http.StatusCreated)
}

// draftInput replaces the draft's graph.
type draftInput struct {
	Graph *workflow.Graph `json:"graph"`
}

func (h *Handler) putDraft(w http.ResponseWriter, r *http.Request, p account.Principal) {
	ws, ok := h.builder(w, r, p, "workflows")
	if !ok {
		return
	}
	wf, ok := h.loadWorkflow(w, r, ws)
	if !ok {
		return
	}
	var in draftInput
	if err := decode(w, r, &in); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	if in.Graph == nil {
		writeError(w, r, h.log, apperr.Invalid("graph", "Send the draft's \"graph\""))
		return
	}
	if err := graphShape(in.Graph); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	if _, err := h.workflows.SaveDraft(r.Context(), ws, wf.ID, *in.Graph, p.User.ID); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	wf, ok = h.loadWorkflow(w, r, ws)
	if !ok {
		return
	}
	h.detail(w, r, ws, wf, http.StatusOK)
}

// graphShape checks what a stored graph needs to be read back: the schema
// version and a trigger. Everything else is the publish gate's to report,
// as in the editor.
func graphShape(g *workflow.Graph) error {
	if g == nil {
		return nil
	}
	if g.Schema == 0 {
		g.Schema = workflow.SchemaVersion
	}
	if g.Schema != workflow.SchemaVersion {
		return apperr.Invalid("graph.schema", fmt.Sprintf("The workflow document has version %d; this TaskJuice reads version %d", g.Schema, workflow.SchemaVersion))
	}
	if g.Trigger == nil {
		return apperr.Invalid("graph.trigger", "A workflow needs a trigger")
	}
	if g.Nodes == nil {
		g.Nodes = []workflow.Node{}
	}
	if g.Edges == nil {
		g.Edges = []workflow.Edge{}
	}
	return nil
}
