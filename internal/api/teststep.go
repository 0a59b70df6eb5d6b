package api

import (
	"encoding/json"
	"errors"
	"net/http"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
	"taskjuice/internal/engine"
	"taskjuice/internal/workflow"
)

// testStepRequest is the sample data a step is tested against: the
// trigger's sample and earlier steps' outputs by node id.
type testStepRequest struct {
	Trigger json.RawMessage            `json:"trigger"`
	Steps   map[string]json.RawMessage `json:"steps"`
	Input   json.RawMessage            `json:"input"`
	Confirm bool                       `json:"confirm"`
	// RunID takes the trigger payload and the steps' outputs of one of
	// the workflow's earlier runs, under what the body gives.
	RunID string `json:"runId"`
}

// testStep runs one step of the workflow's draft against the samples in
// the body, without creating a run. A step with an external effect needs
// "confirm": true.
func (h *Handler) testStep(w http.ResponseWriter, r *http.Request, p account.Principal, ws account.Workspace, wf workflow.Workflow) {
	var in testStepRequest
	if err := decode(w, r, &in); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	v, err := h.current(r, ws, wf)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	node, ok := findNode(v.Graph.Nodes, r.PathValue("nodeId"))
	if !ok {
		writeError(w, r, h.log, apperr.NotFound("This workflow has no step "+r.PathValue("nodeId")))
		return
	}
	if err := h.withRunData(r, ws, wf.ID, &in); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	if err := h.withStoredSamples(r, wf.ID, engine.TriggerSampleOf(v.Graph, h.catalog), &in); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	res, err := h.engine.TestStep(r.Context(), engine.Run{WorkspaceID: ws.ID, WorkflowID: wf.ID, VersionID: v.ID}, node, in.scope(), in.Confirm)
	if errors.Is(err, engine.ErrNeedsConfirm) {
		writeError(w, r, h.log, apperr.Conflict("CONFIRM_REQUIRED", "confirm", err.Error()+`: send "confirm": true`))
		return
	}
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	out, _ := json.Marshal(res.Output)
	if err := h.engine.SaveSample(r.Context(), wf.ID, engine.Sample{NodeID: node.ID, Source: "test", Data: out, Input: res.Input, Error: res.Error, DurationMS: res.DurationMS}); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// withRunData fills what the body leaves out with the data of the earlier
// run it names.
func (h *Handler) withRunData(r *http.Request, ws account.Workspace, workflowID string, in *testStepRequest) error {
	if in.RunID == "" {
		return nil
	}
	trigger, steps, err := h.engine.RunData(r.Context(), ws.ID, workflowID, in.RunID)
	if apperr.IsNotFound(err) {
		return apperr.Invalid("runId", "There is no such run in this workspace")
	}
	if err != nil {
		return err
	}
	if len(in.Trigger) == 0 {
		in.Trigger = trigger
	}
	if in.Steps == nil {
		in.Steps = map[string]json.RawMessage{}
	}
	for id, out := range steps {
		if _, given := in.Steps[id]; !given {
			in.Steps[id] = out
		}
	}
	return nil
}

// withStoredSamples fills what the body leaves out with the workflow's
// stored samples: the trigger's and each earlier step's last test.
func (h *Handler) withStoredSamples(r *http.Request, workflowID string, trigger engine.TriggerSample, in *testStepRequest) error {
	stored, err := h.engine.Samples(r.Context(), workflowID, trigger)
	if err != nil {
		return err
	}
	if t, ok := stored[trigger.ID]; ok && len(in.Trigger) == 0 {
		in.Trigger = t.Data
	}
	if in.Steps == nil {
		in.Steps = map[string]json.RawMessage{}
	}
	for id, s := range stored {
		if _, given := in.Steps[id]; !given && id != trigger.ID && s.Error == nil {
			in.Steps[id] = s.Data
		}
	}
	return nil
}

// putTriggerSample stores a pasted sample of the trigger's event.
func (h *Handler) putTriggerSample(w http.ResponseWriter, r *http.Request, p account.Principal, ws account.Workspace, wf workflow.Workflow) {
	var in struct {
		Data json.RawMessage `json:"data"`
	}
	if err := decode(w, r, &in); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	if len(in.Data) == 0 || string(in.Data) == "null" {
		writeError(w, r, h.log, apperr.Invalid("data", `Field "data" is required: the trigger's sample event as JSON`))
		return
	}
	v, err := h.current(r, ws, wf)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	if err := h.engine.SaveSample(r.Context(), wf.ID, engine.Sample{NodeID: engine.TriggerSampleID(v.Graph), Source: "pasted", Data: in.Data}); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	h.listSamples(w, r, p, ws, wf)
}

// listSamples answers the workflow's samples by node id.
func (h *Handler) listSamples(w http.ResponseWriter, r *http.Request, p account.Principal, ws account.Workspace, wf workflow.Workflow) {
	stored, err := h.engine.Samples(r.Context(), wf.ID, engine.TriggerSample{})
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"samples": stored})
}

func (in testStepRequest) scope() engine.Scope {
	s := engine.Scope{Trigger: in.Trigger, Input: in.Input, Steps: map[string]engine.StepData{}}
	for id, data := range in.Steps {
		s.Steps[id] = engine.StepData{Data: data, Meta: map[string]any{}}
	}
	if len(s.Input) == 0 {
		s.Input = in.Trigger
	}
	return s
}

func findNode(nodes []workflow.Node, id string) (workflow.Node, bool) {
	for _, n := range nodes {
		if n.ID == id {
			return n, true
		}
	}
	return workflow.Node{}, false
}

// previewExpression evaluates a setting's text against the samples in the
// body; a syntax error comes back as the structured error, with 200.
func (h *Handler) previewExpression(w http.ResponseWriter, r *http.Request, p account.Principal, ws account.Workspace, wf workflow.Workflow) {
	var in struct {
		testStepRequest
		Text *string `json:"text"`
	}
	if err := decode(w, r, &in); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	if in.Text == nil {
		writeError(w, r, h.log, apperr.Invalid("text", `Field "text" is required: the setting to evaluate, e.g. "{{ $trigger.name }}"`))
		return
	}
	d, err := h.current(r, ws, wf)
	if err == nil {
		err = h.withStoredSamples(r, wf.ID, engine.TriggerSampleOf(d.Graph, h.catalog), &in.testStepRequest)
	}
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	v, err := h.engine.Preview(r.Context(), *in.Text, in.scope())
	var se *engine.StepError
	if errors.As(err, &se) {
		writeJSON(w, http.StatusOK, map[string]any{"error": se})
		return
	}
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"value": v})
}
