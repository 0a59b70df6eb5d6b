package api

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
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

// workflowRoute resolves what every route of one workflow needs before fn:
// the workspace (with the builder's permission when write is set) and the
// workflow of {id}.
func (h *Handler) workflowRoute(write bool, fn func(w http.ResponseWriter, r *http.Request, p account.Principal, ws account.Workspace, wf workflow.Workflow)) func(http.ResponseWriter, *http.Request, account.Principal) {
	return func(w http.ResponseWriter, r *http.Request, p account.Principal) {
		var ws account.Workspace
		var ok bool
		if write {
			ws, ok = h.builder(w, r, p, "workflows")
		} else {
			ws, ok = h.workspace(w, r, p)
		}
		if !ok {
			return
		}
		if wf, ok := h.loadWorkflow(w, r, ws); ok {
			fn(w, r, p, ws, wf)
		}
	}
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

func (h *Handler) getWorkflow(w http.ResponseWriter, r *http.Request, p account.Principal, ws account.Workspace, wf workflow.Workflow) {
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

func (h *Handler) putDraft(w http.ResponseWriter, r *http.Request, p account.Principal, ws account.Workspace, wf workflow.Workflow) {
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
	h.reload(w, r, ws)
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

// current is the version the editor shows: the draft, else the live
// version, else the newest.
func (h *Handler) current(r *http.Request, ws account.Workspace, wf workflow.Workflow) (workflow.Version, error) {
	versions, err := h.workflows.Versions(r.Context(), ws, wf.ID)
	if err != nil {
		return workflow.Version{}, err
	}
	for _, v := range versions {
		if v.State == workflow.VersionDraft {
			return v, nil
		}
	}
	for _, v := range versions {
		if v.ID == wf.ActiveVersionID {
			return v, nil
		}
	}
	if len(versions) == 0 {
		return workflow.Version{}, apperr.ErrNotFound
	}
	return versions[0], nil
}

// validateWorkflow reports the publish gate's findings on the draft (else
// the live version) without publishing anything.
func (h *Handler) validateWorkflow(w http.ResponseWriter, r *http.Request, p account.Principal, ws account.Workspace, wf workflow.Workflow) {
	v, err := h.current(r, ws, wf)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	problems := workflow.Validate(v.Graph, h.gate.Checks(r.Context(), ws, wf.ID))
	if problems == nil {
		problems = []workflow.Problem{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"versionId": v.ID, "valid": len(problems) == 0, "problems": problems})
}

// publishWorkflow publishes the draft, or the version the body names (an
// earlier one to roll back to), through the publish gate.
func (h *Handler) publishWorkflow(w http.ResponseWriter, r *http.Request, p account.Principal, ws account.Workspace, wf workflow.Workflow) {
	var in struct {
		VersionID string `json:"versionId"`
	}
	if r.ContentLength != 0 {
		if err := decode(w, r, &in); err != nil {
			writeError(w, r, h.log, err)
			return
		}
	}
	if _, err := h.workflows.Publish(r.Context(), ws, wf.ID, in.VersionID, h.gate.Checks(r.Context(), ws, wf.ID)); err != nil {
		writeError(w, r, h.log, apperr.Explain(err, "There is no such version of this workflow."))
		return
	}
	h.reload(w, r, ws)
}

// reload answers the workflow of the route as it now stands.
func (h *Handler) reload(w http.ResponseWriter, r *http.Request, ws account.Workspace) {
	wf, ok := h.loadWorkflow(w, r, ws)
	if !ok {
		return
	}
	h.detail(w, r, ws, wf, http.StatusOK)
}

func (h *Handler) deactivateWorkflow(w http.ResponseWriter, r *http.Request, p account.Principal, ws account.Workspace, wf workflow.Workflow) {
	if err := h.workflows.Deactivate(r.Context(), ws, wf.ID); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	h.reload(w, r, ws)
}

// archiveWorkflow archives the workflow: it starts no runs and is kept for
// reference; runs in flight are not touched.
func (h *Handler) archiveWorkflow(w http.ResponseWriter, r *http.Request, p account.Principal, ws account.Workspace, wf workflow.Workflow) {
	if err := h.workflows.SetOperatorState(r.Context(), ws, wf.ID, workflow.StatusArchived); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	h.reload(w, r, ws)
}

func (h *Handler) listWorkflowVersions(w http.ResponseWriter, r *http.Request, p account.Principal, ws account.Workspace, wf workflow.Workflow) {
	versions, err := h.workflows.Versions(r.Context(), ws, wf.ID)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"versions": nonNil(versions)})
}

// diffWorkflowVersions compares two versions, named by number:
// ?from=1&to=2.
func (h *Handler) diffWorkflowVersions(w http.ResponseWriter, r *http.Request, p account.Principal, ws account.Workspace, wf workflow.Workflow) {
	versions, err := h.workflows.Versions(r.Context(), ws, wf.ID)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	pick := func(param string) (workflow.Version, error) {
		n, err := strconv.Atoi(r.URL.Query().Get(param))
		if err != nil {
			return workflow.Version{}, apperr.Invalid(param, param+" must be a version number, e.g. ?from=1&to=2")
		}
		for _, v := range versions {
			if v.Number == n {
				return v, nil
			}
		}
		return workflow.Version{}, apperr.Invalid(param, fmt.Sprintf("This workflow has no version %d", n))
	}
	from, err := pick("from")
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	to, err := pick("to")
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"from": from.Number, "to": to.Number, "diff": workflow.DiffGraphs(from.Graph, to.Graph)})
}

// exportWorkflow answers the workflow as the document the Workflows page
// exports and imports.
func (h *Handler) exportWorkflow(w http.ResponseWriter, r *http.Request, p account.Principal, ws account.Workspace, wf workflow.Workflow) {
	exp, err := h.workflows.Export(r.Context(), ws, wf.ID)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, exp)
}

// importWorkflow creates a draft workflow from an exported document, as the
// Workflows page does.
func (h *Handler) importWorkflow(w http.ResponseWriter, r *http.Request, p account.Principal) {
	ws, ok := h.builder(w, r, p, "workflows")
	if !ok {
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			writeError(w, r, h.log, apperr.BadRequest("unsupported_media_type", "Send the document as JSON with Content-Type: application/json"))
			return
		}
	}
	r.Body = http.MaxBytesReader(w, r.Body, workflow.MaxGraphBytes+64<<10)
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		writeError(w, r, h.log, &apperr.Error{Kind: apperr.KindTooLarge, Code: "body_too_large",
			Message: fmt.Sprintf("A workflow document is at most %d KiB", (workflow.MaxGraphBytes+64<<10)>>10)})
		return
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		writeError(w, r, h.log, apperr.BadRequest("empty_body", "The request body is empty; send an exported workflow document"))
		return
	}
	wf, err := h.workflows.Import(r.Context(), ws, raw, p.User.ID)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	w.Header().Set("Location", "/api/v1/workspaces/"+ws.Slug+"/workflows/"+wf.ID)
	h.detail(w, r, ws, wf, http.StatusCreated)
}

// patchWorkflowSettings changes the workflow's settings, as the settings
// form of its page: the run limit first (the one that can be refused), so a
// refused request changes nothing.
func (h *Handler) patchWorkflowSettings(w http.ResponseWriter, r *http.Request, p account.Principal, ws account.Workspace, wf workflow.Workflow) {
	var in struct {
		AutoResumeReauth *bool   `json:"autoResumeReauth"`
		MaxRunsPerMinute *int    `json:"maxRunsPerMinute"`
		ErrorWorkflowID  *string `json:"errorWorkflowId"`
	}
	if err := decode(w, r, &in); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	if in.AutoResumeReauth == nil && in.MaxRunsPerMinute == nil && in.ErrorWorkflowID == nil {
		writeError(w, r, h.log, apperr.Invalid("maxRunsPerMinute", "Send \"autoResumeReauth\", \"maxRunsPerMinute\" or \"errorWorkflowId\" to change"))
		return
	}
	if in.MaxRunsPerMinute != nil {
		if err := workflow.CheckThroughputLimit(*in.MaxRunsPerMinute); err != nil {
			writeError(w, r, h.log, err)
			return
		}
	}
	if in.ErrorWorkflowID != nil {
		if err := h.workflows.SetErrorWorkflow(r.Context(), ws, wf.ID, *in.ErrorWorkflowID); err != nil {
			writeError(w, r, h.log, err)
			return
		}
	}
	if in.MaxRunsPerMinute != nil {
		if err := h.workflows.SetThroughputLimit(r.Context(), ws, wf.ID, *in.MaxRunsPerMinute); err != nil {
			writeError(w, r, h.log, err)
			return
		}
	}
	if in.AutoResumeReauth != nil {
		if err := h.workflows.SetAutoResume(r.Context(), ws, wf.ID, *in.AutoResumeReauth); err != nil {
			writeError(w, r, h.log, err)
			return
		}
	}
	h.reload(w, r, ws)
}
