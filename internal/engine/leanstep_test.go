package engine_test

import (
	"encoding/json"
	"strings"
	"testing"

	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
	"taskjuice/internal/engine"
	"taskjuice/internal/workflow"
)

// A step's row names where its input came from instead of storing a copy,
// and stores its idempotency key only where it is not the derived one; the
// run's steps still show every input and key.
func TestStepRowsStoreInputOnce(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		wf := f.publish([]workflow.Node{
			f.bound(post("Hello")),
			{ID: "double", Kind: workflow.NodeTransform, Config: json.RawMessage(`{"output": {"n": 42}}`)},
			{ID: "done", Kind: workflow.NodeTransform, Config: json.RawMessage(`{"output": {"ok": true}}`)},
		})
		id, err := f.eng.StartRun(f.ctx, wf, json.RawMessage(`{"n":21}`), "manual", "")
		must(t, err)
		f.drain()
		if r := f.run(id); r.Status != engine.StatusCompleted {
			t.Fatalf("run: %s, want completed", r.Status)
		}
		steps, err := f.eng.Steps(f.ctx, f.ws.ID, id)
		must(t, err)
		if len(steps) != 3 {
			t.Fatalf("steps: %d, want 3", len(steps))
		}
		byNode := map[string]engine.Step{}
		for _, s := range steps {
			byNode[s.NodeID] = s
			if s.IdempotencyKey != id+":"+s.NodeID {
				t.Errorf("%s: key %q, want %q", s.NodeID, s.IdempotencyKey, id+":"+s.NodeID)
			}
		}
		if got := string(byNode["post"].Input); got != `{"n":21}` {
			t.Errorf("first step's input: %s, want the trigger payload", got)
		}
		if got, want := string(byNode["double"].Input), string(byNode["post"].Output); got != want || got == "" {
			t.Errorf("second step's input: %s, want the first step's output %s", got, want)
		}
		if got, want := string(byNode["done"].Input), string(byNode["double"].Output); got != want || got != `{"n":42}` {
			t.Errorf("third step's input: %s, want %s", got, want)
		}
		var copies, keys int
		must(t, d.Read().QueryRowContext(f.ctx, `SELECT COUNT(input), COUNT(idempotency_key) FROM run_steps WHERE run_id = $1`, id).Scan(&copies, &keys))
		if copies != 0 || keys != 0 {
			t.Errorf("rows store %d inputs and %d keys, want none: each is derived", copies, keys)
		}
	})
}

// A step marked "Don't store input and output" keeps "[redacted]" for
// both; the step after it still gets its real output while the run goes
// on, and the run's steps show nothing of it, through the next step's
// input either.
func TestRedactedStep(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		wf := f.publish([]workflow.Node{
			{ID: "secret", Kind: workflow.NodeTransform, Redact: true, Config: json.RawMessage(`{"output": {"ssn": "123-45-6789"}}`)},
			{ID: "after", Kind: workflow.NodeTransform, Config: json.RawMessage(`{"output": {"ok": true}}`)},
		})
		id, err := f.eng.StartRun(f.ctx, wf, json.RawMessage(`{"card":"4111"}`), "manual", "")
		must(t, err)
		f.drain()
		if r := f.run(id); r.Status != engine.StatusCompleted {
			t.Fatalf("run: %s", r.Status)
		}
		steps, err := f.eng.Steps(f.ctx, f.ws.ID, id)
		must(t, err)
		for _, s := range steps {
			if strings.Contains(string(s.Input)+string(s.Output)+s.Console, "123-45-6789") || (s.NodeID == "secret" && strings.Contains(string(s.Input), "4111")) {
				t.Fatalf("step %s shows redacted data: input %s, output %s", s.NodeID, s.Input, s.Output)
			}
			if s.NodeID == "secret" && (string(s.Input) != `"[redacted]"` || string(s.Output) != `"[redacted]"`) {
				t.Fatalf("redacted step: input %s, output %s", s.Input, s.Output)
			}
		}
		var n int
		must(t, d.Read().QueryRowContext(f.ctx, `SELECT COUNT(*) FROM run_steps WHERE run_id = $1 AND (output LIKE '%123-45%' OR input LIKE '%123-45%')`, id).Scan(&n))
		if n != 0 {
			t.Fatalf("%d step rows hold the redacted value", n)
		}
	})
}
