package engine_test

import (
	"encoding/json"
	"errors"
	"testing"

	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
	"taskjuice/internal/engine"
	"taskjuice/internal/workflow"
)

func countRows(t *testing.T, d *db.DB, table string) int {
	t.Helper()
	var n int
	must(t, d.Read().QueryRowContext(t.Context(), "SELECT COUNT(*) FROM "+table).Scan(&n))
	return n
}

// Testing a step evaluates its expressions against the samples and runs
// it, reports an expression error as a structured error, asks for
// confirmation before an external effect, and creates no run.
func TestTestStep(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		f.clockedEngine(nil)
		scope := engine.Scope{
			Trigger: json.RawMessage(`{"name":"Ada"}`),
			Steps:   map[string]engine.StepData{"first": {Data: json.RawMessage(`{"total":41}`)}},
			Input:   json.RawMessage(`{"total":41}`),
		}
		node := workflow.Node{ID: "shape", Kind: workflow.NodeTransform,
			Config: json.RawMessage(`{"output":{"who":"{{ $trigger.name }}","next":"{{ $steps.first.data.total + 1 }}"}}`)}
		res, err := f.eng.TestStep(f.ctx, engine.Run{WorkflowID: "wf"}, node, scope, false)
		must(t, err)
		if res.Error != nil {
			t.Fatalf("transform test failed: %+v", res.Error)
		}
		got, _ := json.Marshal(res.Output)
		if string(got) != `{"next":42,"who":"Ada"}` {
			t.Fatalf("output %s; want who Ada, next 42", got)
		}
		if string(res.Input) != `{"output":{"next":42,"who":"Ada"}}` {
			t.Fatalf("evaluated input %s", res.Input)
		}

		bad := workflow.Node{ID: "bad", Kind: workflow.NodeTransform, Config: json.RawMessage(`{"output":"{{ $trigger.( }}"}`)}
		res, err = f.eng.TestStep(f.ctx, engine.Run{WorkflowID: "wf"}, bad, scope, false)
		must(t, err)
		if res.Error == nil || res.Error.Code == "INTERNAL" {
			t.Fatalf("expression that does not parse: %+v; want an EXPRESSION error", res.Error)
		}

		post := workflow.Node{ID: "post", Kind: workflow.NodeHTTP, Config: json.RawMessage(`{"method":"POST","url":"http://127.0.0.1:1/"}`)}
		if _, err := f.eng.TestStep(f.ctx, engine.Run{WorkflowID: "wf"}, post, scope, false); !errors.Is(err, engine.ErrNeedsConfirm) {
			t.Fatalf("POST without confirmation: %v; want ErrNeedsConfirm", err)
		}
		if engine.HasExternalEffect(httpStep("http://x.example/")) {
			t.Fatal("a GET request is said to have an external effect")
		}
		if n := countRows(t, d, "runs") + countRows(t, d, "run_steps"); n != 0 {
			t.Fatalf("testing steps wrote %d run rows; want none", n)
		}
	})
}
