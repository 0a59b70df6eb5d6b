package engine_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
	"taskjuice/internal/engine"
	"taskjuice/internal/workflow"
)

// A bulk retry works through its runs in batches in the background: the
// failed ones are retried, the others skipped with the reason, and the
// counts add up; runs of another workspace are never selected.
func TestBulkRetry(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		var broken atomic.Bool
		broken.Store(true)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if broken.Load() {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			_, _ = w.Write([]byte(`{}`))
		}))
		defer srv.Close()
		cfg, _ := json.Marshal(map[string]any{"method": "POST", "url": srv.URL})
		wf := f.publish([]workflow.Node{{ID: "save", Kind: workflow.NodeHTTP, Config: cfg}})
		var failed []string
		for range 120 {
			id, err := f.eng.StartRun(f.ctx, wf, nil, "manual", "")
			must(t, err)
			failed = append(failed, id)
		}
		drainAll(t, f)
		broken.Store(false)
		ok, err := f.eng.StartRun(f.ctx, wf, nil, "manual", "")
		must(t, err)
		drainAll(t, f)

		if _, err := f.eng.StartBulk(f.ctx, f.ws.ID, "", "explode", failed, nil); !apperr.Is(err, apperr.KindInvalid) {
			t.Fatalf("unknown action: %v, want invalid", err)
		}
		accounts := account.NewService(d)
		other, _, err := accounts.CreateAccount(f.ctx, "Other agency", account.NewUser{Email: "o@other.example", Password: "correct horse battery"})
		must(t, err)
		otherWS, err := accounts.CreateWorkspaceForAccount(f.ctx, other.ID, "Other", "other")
		must(t, err)
		if _, err := f.eng.StartBulk(f.ctx, otherWS.ID, "", engine.BulkRetry, failed, nil); !apperr.Is(err, apperr.KindInvalid) {
			t.Fatalf("another workspace's runs: %v, want invalid (none selected)", err)
		}
		job, err := f.eng.StartBulk(f.ctx, f.ws.ID, "", engine.BulkRetry, append(append([]string{}, failed...), ok), nil)
		must(t, err)
		if job.Total != 121 || job.Finished {
			t.Fatalf("job: %+v, want 121 runs, running", job)
		}
		for {
			did, err := f.eng.WorkBulk(f.ctx, func(context.Context, string) (string, error) { return "active", nil })
			must(t, err)
			if !did {
				break
			}
		}
		job, err = f.eng.Bulk(f.ctx, f.ws.ID, job.ID)
		must(t, err)
		if !job.Finished || job.Done != 120 || job.Skipped != 1 || job.SkippedWhy[engine.MsgRetryNotFailed] != 1 {
			t.Fatalf("job after the work: %+v, want 120 done, 1 skipped (not failed)", job)
		}
		var retries int
		must(t, d.Read().QueryRowContext(f.ctx, `SELECT COUNT(*) FROM runs WHERE retry_of IS NOT NULL AND workflow_id = $1`, wf).Scan(&retries))
		if retries != 120 {
			t.Fatalf("retries: %d, want 120", retries)
		}
		// By filter: the 120 failed runs match.
		job2, err := f.eng.StartBulk(f.ctx, f.ws.ID, "", engine.BulkCancel, nil, &engine.ListFilter{Status: engine.StatusFailed})
		must(t, err)
		if job2.Total != 120 {
			t.Fatalf("filtered job: %d runs, want the 120 failed", job2.Total)
		}
		if _, err := f.eng.Bulk(f.ctx, otherWS.ID, job2.ID); !apperr.IsNotFound(err) {
			t.Fatalf("another workspace's job: %v, want not found", err)
		}
	})
}

func drainAll(t *testing.T, f *fixture) {
	t.Helper()
	for {
		did, err := f.eng.Work(f.ctx)
		must(t, err)
		if !did {
			return
		}
	}
}
