package engine_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
	"taskjuice/internal/engine"
	"taskjuice/internal/workflow"
)

// A failed run retried from its failed step: the steps it completed are
// not executed again (the message is posted once), the failed step and the
// ones after it are, the retry links back, and the original stays failed.
func TestRetryFromFailedStep(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		var broken atomic.Bool
		var calls atomic.Int32
		broken.Store(true)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			if broken.Load() {
				w.WriteHeader(http.StatusBadRequest) // permanent: the run fails
				_, _ = w.Write([]byte(`{"error":"bad field"}`))
				return
			}
			_, _ = w.Write([]byte(`{"saved":true}`))
		}))
		defer srv.Close()
		cfg, _ := json.Marshal(map[string]any{"method": "POST", "url": srv.URL, "body": map[string]any{"a": 1}})
		wf := f.publish([]workflow.Node{
			f.bound(post("Hello")),
			{ID: "save", Kind: workflow.NodeHTTP, Config: cfg},
			{ID: "done", Kind: workflow.NodeTransform, Config: json.RawMessage(`{"output": {"ok": true}}`)},
		})
		id, err := f.eng.StartRun(f.ctx, wf, json.RawMessage(`{"lead":"Ada"}`), "manual", "")
		must(t, err)
		f.drain()
		if r := f.run(id); r.Status != engine.StatusFailed {
			t.Fatalf("run: %s, want failed", r.Status)
		}
		if _, err := f.eng.RetryFailed(f.ctx, f.ws.ID, id, "", "newest"); !apperr.Is(err, apperr.KindBadRequest) {
			t.Fatalf("retry on an unknown version: %v, want a bad request", err)
		}
		if _, err := f.eng.RetryFailed(f.ctx, "other-workspace", id, "", engine.RetryOriginal); !apperr.IsNotFound(err) {
			t.Fatalf("retry from another workspace: %v, want not found", err)
		}

		broken.Store(false) // the cause is fixed
		rid, err := f.eng.RetryFailed(f.ctx, f.ws.ID, id, "", engine.RetryOriginal)
		must(t, err)
		f.drain()
		retry := f.run(rid)
		if retry.Status != engine.StatusCompleted || retry.RetryOf != id || retry.StepsDone != 3 {
			t.Fatalf("retry: %s, retry of %q, %d steps done; want completed, of %s, 3", retry.Status, retry.RetryOf, retry.StepsDone, id)
		}
		if got := f.sb.Stats().MessagesPosted; got != 1 {
			t.Errorf("messages posted: %d, want 1 (the completed step is not executed again)", got)
		}
		if got := calls.Load(); got != 2 {
			t.Errorf("calls to the failed step's endpoint: %d, want 2 (the failure and the retry)", got)
		}
		orig := f.run(id)
		if orig.Status != engine.StatusFailed || orig.StepsDone != 1 {
			t.Errorf("original after the retry: %s, %d steps; want failed, 1", orig.Status, orig.StepsDone)
		}
		steps, err := f.eng.Steps(f.ctx, f.ws.ID, rid)
		must(t, err)
		byNode := map[string]engine.Step{}
		for _, s := range steps {
			byNode[s.NodeID] = s
		}
		if s := byNode["post"]; s.Status != engine.StepCompleted || s.IdempotencyKey != id+":post" || string(s.Input) != `{"lead":"Ada"}` {
			t.Errorf("copied step: %s, key %q, input %s; want completed under the original's key %q with its input", s.Status, s.IdempotencyKey, s.Input, id+":post")
		}
		if s := byNode["save"]; s.Status != engine.StepCompleted || s.IdempotencyKey != rid+":save" {
			t.Errorf("retried step: %s, key %q; want completed under the retry's key", s.Status, s.IdempotencyKey)
		}
		retries, err := f.eng.Retries(f.ctx, f.ws.ID, id)
		must(t, err)
		if len(retries) != 1 || retries[0].ID != rid {
			t.Errorf("retries of the original: %+v, want [%s]", retries, rid)
		}
		if _, err := f.eng.RetryFailed(f.ctx, f.ws.ID, rid, "", engine.RetryOriginal); !apperr.Is(err, apperr.KindConflict) {
			t.Errorf("retry of a completed run: %v, want a conflict", err)
		}
	})
}
