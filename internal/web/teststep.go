package web

import (
	"encoding/json"
	"errors"
	"net/http"

	"taskjuice/internal/apperr"
	"taskjuice/internal/engine"
	"taskjuice/internal/workflow"
)

// testStep runs one step of the draft against the workflow's samples,
// without creating a run, keeps its output as the step's sample and shows
// the editor again at the step. A step with an external effect needs the
// "confirm" box ticked.
func (h *Handler) testStep(w http.ResponseWriter, r *http.Request, v view) {
	if err := r.ParseForm(); err != nil {
		h.errorPage(w, r, v.P, errBadForm)
		return
	}
	ctx := r.Context()
	wf, ok := h.loadWorkflow(w, r, v)
	if !ok {
		return
	}
	ver, _, err := h.editorVersion(ctx, *v.Workspace, wf)
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	i := nodeIndex(ver.Graph, r.PathValue("node"))
	if i < 0 || h.Engine == nil {
		h.errorPage(w, r, v.P, errNoStep)
		return
	}
	node := ver.Graph.Nodes[i]
	stored, err := h.Engine.Samples(ctx, wf.ID, engine.TriggerSampleOf(ver.Graph, h.Catalog))
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	scope := sampleScope(ver.Graph, stored)
	if runID := r.PostForm.Get("fromRun"); runID != "" {
		trigger, steps, err := h.Engine.RunData(ctx, v.Workspace.ID, wf.ID, runID)
		if err != nil {
			h.refuse(w, r, v.P, h.editorURL(v, wf.ID)+"#step-"+node.ID, apperr.Explain(err, "There is no such run of this workflow."))
			return
		}
		scope.Trigger, scope.Input = trigger, trigger
		for id, out := range steps {
			scope.Steps[id] = engine.StepData{Data: out, Meta: map[string]any{}}
		}
	}
	res, err := h.Engine.TestStep(ctx, engine.Run{WorkspaceID: v.Workspace.ID, WorkflowID: wf.ID, VersionID: ver.ID}, node, scope, r.PostForm.Get("confirm") != "")
	if errors.Is(err, engine.ErrNeedsConfirm) {
		res = engine.StepTest{Error: &engine.StepError{Code: "CONFIRM_REQUIRED", Message: err.Error() + ": tick the box and test again"}}
	} else if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	out, _ := json.Marshal(res.Output)
	if err := h.Engine.SaveSample(ctx, wf.ID, engine.Sample{NodeID: node.ID, Source: "test", Data: out, Input: res.Input, Error: res.Error, DurationMS: res.DurationMS}); err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	redirect(w, r, h.editorURL(v, wf.ID)+"#step-"+node.ID)
}

// sampleScope is what a tested step's expressions see: the trigger's
// sample and every step's last successful test.
func sampleScope(g workflow.Graph, stored map[string]engine.Sample) engine.Scope {
	s := engine.Scope{Steps: map[string]engine.StepData{}, Meta: map[string]any{}}
	for id, sm := range stored {
		switch {
		case id == engine.TriggerSampleID(g):
			s.Trigger, s.Input = sm.Data, sm.Data
		case sm.Error == nil:
			s.Steps[id] = engine.StepData{Data: sm.Data, Meta: map[string]any{}}
		}
	}
	return s
}

const msgSampleNotJSON = "The sample is not valid JSON; paste the event as a JSON object"

// saveTriggerSample keeps a pasted sample event for the trigger; text that
// is not JSON is refused and nothing is kept.
func (h *Handler) saveTriggerSample(w http.ResponseWriter, r *http.Request, v view) {
	if err := r.ParseForm(); err != nil {
		h.errorPage(w, r, v.P, errBadForm)
		return
	}
	wf, ok := h.loadWorkflow(w, r, v)
	if !ok {
		return
	}
	ver, _, err := h.editorVersion(r.Context(), *v.Workspace, wf)
	if err == nil && h.Engine == nil {
		err = errNoStep
	}
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	text := []byte(r.PostForm.Get("sample"))
	if !json.Valid(text) {
		redirect(w, r, h.editorURL(v, wf.ID)+"?sample=invalid#trigger")
		return
	}
	if err := h.Engine.SaveSample(r.Context(), wf.ID, engine.Sample{NodeID: engine.TriggerSampleID(ver.Graph), Source: "pasted", Data: text}); err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	redirect(w, r, h.editorURL(v, wf.ID)+"#trigger")
}
