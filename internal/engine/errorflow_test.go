package engine_test

import (
	"encoding/json"
	"testing"

	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
	"taskjuice/internal/engine"
	"taskjuice/internal/workflow"
)

// A failed run starts its workflow's error workflow once, with the failure
// as payload; the error workflow's own failure starts nothing more.
func TestErrorWorkflow(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		failing := f.publish([]workflow.Node{{ID: "boom", Name: "Save the lead", Kind: workflow.NodeHTTP,
			Config: json.RawMessage(`{"method": "GET", "url": "http://127.0.0.1:1/nothing", "retry": {"maxAttempts": 1}}`)}})

		// The error workflow starts with the Error trigger; its own step
		// fails too.
		g := workflow.Graph{Schema: 1, Trigger: &workflow.Node{ID: "failed", Kind: workflow.TriggerError},
			Nodes: []workflow.Node{{ID: "report", Kind: workflow.NodeHTTP, Config: json.RawMessage(`{"method": "GET", "url": "http://127.0.0.1:1/report", "retry": {"maxAttempts": 1}}`)}},
			Edges: []workflow.Edge{{From: "failed", To: "report"}}}
		handler, err := f.wfs.Create(f.ctx, f.ws, "On failure", "", &g, "")
		must(t, err)
		_, err = f.wfs.Publish(f.ctx, f.ws, handler.ID, "", workflow.Checks{})
		must(t, err)

		if err := f.wfs.SetErrorWorkflow(f.ctx, f.ws, failing, failing); !apperr.Is(err, apperr.KindInvalid) {
			t.Fatalf("a workflow as its own error workflow: %v, want invalid", err)
		}
		other := f.publish([]workflow.Node{{ID: "ok", Kind: workflow.NodeTransform, Config: json.RawMessage(`{"output": {}}`)}})
		if err := f.wfs.SetErrorWorkflow(f.ctx, f.ws, failing, other); !apperr.Is(err, apperr.KindInvalid) {
			t.Fatalf("an error workflow without the Error trigger: %v, want invalid", err)
		}
		if err := f.wfs.SetErrorWorkflow(f.ctx, f.ws, failing, "no-such-workflow"); !apperr.Is(err, apperr.KindInvalid) {
			t.Fatalf("an unknown error workflow: %v, want invalid", err)
		}
		must(t, f.wfs.SetErrorWorkflow(f.ctx, f.ws, failing, handler.ID))

		id, err := f.eng.StartRun(f.ctx, failing, json.RawMessage(`{"lead":"Ada"}`), "manual", "")
		must(t, err)
		f.drainPast(f.clk, id)
		if r := f.run(id); r.Status != engine.StatusFailed {
			t.Fatalf("run: %s, want failed", r.Status)
		}
		runs := f.runsOf(handler.ID)
		if len(runs) != 1 {
			t.Fatalf("error workflow runs: %d, want 1", len(runs))
		}
		errRun := runs[0]
		var p struct {
			Workflow   struct{ ID, Name string }
			Run        struct{ ID, Source string }
			FailedStep struct{ ID, Name string }
			Error      engine.StepError
			Trigger    map[string]any
		}
		must(t, json.Unmarshal(errRun.TriggerPayload, &p))
		if p.Workflow.ID != failing || p.Run.ID != id || p.Run.Source != "manual" || p.FailedStep.ID != "boom" || p.FailedStep.Name != "Save the lead" ||
			p.Error.Code == "" || p.Trigger["lead"] != "Ada" || errRun.Source != engine.SourceError {
			t.Fatalf("error workflow payload: %s (source %s)", errRun.TriggerPayload, errRun.Source)
		}
		// The error workflow's run fails as well: nothing more starts.
		f.drainPast(f.clk, errRun.ID)
		if r := f.run(errRun.ID); r.Status != engine.StatusFailed {
			t.Fatalf("error workflow run: %s, want failed", r.Status)
		}
		if n := len(f.runsOf(handler.ID)); n != 1 {
			t.Fatalf("error workflow runs after its own failure: %d, want 1", n)
		}
		must(t, f.wfs.SetErrorWorkflow(f.ctx, f.ws, failing, ""))
		id2, err := f.eng.StartRun(f.ctx, failing, nil, "manual", "")
		must(t, err)
		f.drainPast(f.clk, id2)
		if n := len(f.runsOf(handler.ID)); n != 1 {
			t.Fatalf("error workflow runs once unset: %d, want 1", n)
		}
	})
}

func (f *fixture) runsOf(workflowID string) []engine.Run {
	f.t.Helper()
	rows, err := f.d.Read().QueryContext(f.ctx, `SELECT id FROM runs WHERE workflow_id = $1 ORDER BY created_at, id`, workflowID)
	must(f.t, err)
	var ids []string
	for rows.Next() {
		var id string
		must(f.t, rows.Scan(&id))
		ids = append(ids, id)
	}
	rows.Close()
	var out []engine.Run
	for _, id := range ids {
		out = append(out, f.run(id))
	}
	return out
}
