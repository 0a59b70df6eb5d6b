package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"taskjuice/internal/engine"
	"taskjuice/internal/workflow"
)

// seedFailed records n failed runs of a one-step workflow that failed at
// its step, as the engine leaves them, in batches.
func seedFailed(t *testing.T, e *env, n int) (workflowID string) {
	t.Helper()
	ctx := context.Background()
	g, err := workflow.ParseGraph([]byte(`{"schema":1,"trigger":{"id":"start","kind":"manual"},
		"nodes":[{"id":"save","kind":"transform","config":{"output":{"ok":true}}}],"edges":[{"from":"start","to":"save"}]}`))
	must(t, err)
	w, err := e.workflows.Create(ctx, e.acme, "Lead sync", "", &g, "")
	must(t, err)
	_, err = e.workflows.Publish(ctx, e.acme, w.ID, "", workflow.Checks{})
	must(t, err)
	w, err = e.workflows.Get(ctx, e.acme, w.ID)
	must(t, err)
	base := time.Now().UTC().Add(-time.Hour)
	for done := 0; done < n; {
		k := min(400, n-done)
		var q strings.Builder
		q.WriteString(`INSERT INTO runs (id, workspace_id, workflow_id, version_id, kind, status, source, trigger_payload, frontier, error, created_at, finished_at, updated_at) VALUES `)
		var args []any
		for i := range k {
			if i > 0 {
				q.WriteString(",")
			}
			p := len(args)
			fmt.Fprintf(&q, "($%d, $%d, $%d, $%d, 'workflow', 'failed', 'manual', '{}', '[\"save\"]', '{\"code\":\"HTTP_500\",\"message\":\"The app failed\"}', $%d, $%d, $%d)",
				p+1, p+2, p+3, p+4, p+5, p+5, p+5)
			args = append(args, fmt.Sprintf("00000000-0000-4000-8000-%012d", done+i), e.acme.ID, w.ID, w.ActiveVersionID, base.Add(time.Duration(done+i)*time.Millisecond))
		}
		_, err := e.db.Write().ExecContext(ctx, q.String(), args...)
		must(t, err)
		done += k
	}
	return w.ID
}

// workBulk runs the bulk worker until no job has work left.
func workBulk(t *testing.T, e *env) {
	t.Helper()
	for {
		did, err := e.engine.WorkBulk(context.Background(), func(context.Context, string) (string, error) { return "active", nil })
		must(t, err)
		if !did {
			return
		}
	}
}

// TestBulkActionsAPI: a bulk retry by filter, and by ids with one run that
// cannot be retried, through the API; bad input is refused; another
// account's job is not found.
func TestBulkActionsAPI(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		seedFailed(t, e, 120)
		member := e.signIn("member@a.example")
		base := "/api/v1/workspaces/acme/bulk-jobs"
		for _, c := range []struct{ what, body, message string }{
			{"unknown action", `{"action": "explode", "filter": {"status": "failed"}}`, "Choose what to do to the runs"},
			{"no selection", `{"action": "retry"}`, `Send either "runIds" or a "filter"`},
			{"both", `{"action": "retry", "runIds": ["x"], "filter": {}}`, `Send either "runIds" or a "filter"`},
			{"bad status", `{"action": "retry", "filter": {"status": "broken"}}`, "status must be"},
			{"nothing matches", `{"action": "retry", "runIds": ["no-such-run"]}`, "Select at least one run"},
		} {
			wantAPIError(t, c.what, member.api("POST", base, c.body), 422, c.message)
		}
		res := member.api("POST", base, `{"action": "retry", "filter": {"status": "failed"}}`)
		wantStatus(t, "bulk retry", res, 202)
		var got struct{ Job engine.BulkJob }
		must(t, json.Unmarshal([]byte(res.Body), &got))
		if got.Job.Total != 120 || got.Job.Finished {
			t.Fatalf("job: %+v, want 120 runs, running", got.Job)
		}
		workBulk(t, e)
		res = member.api("GET", base+"/"+got.Job.ID, "")
		wantStatus(t, "read the job", res, 200)
		must(t, json.Unmarshal([]byte(res.Body), &got))
		if !got.Job.Finished || got.Job.Done != 120 || got.Job.Skipped != 0 {
			t.Fatalf("job after the work: %+v, want 120 done", got.Job)
		}
		// The retries are pending, not failed: retrying them again skips each.
		res = member.api("POST", base, `{"action": "retry", "runIds": ["00000000-0000-4000-8000-000000000001"]}`)
		wantStatus(t, "retry a retried run again", res, 202)
		must(t, json.Unmarshal([]byte(res.Body), &got))
		workBulk(t, e)
		res = member.api("GET", base+"/"+got.Job.ID, "")
		must(t, json.Unmarshal([]byte(res.Body), &got))
		if got.Job.Done != 1 {
			t.Fatalf("a failed run retried twice: %+v, want done (a second retry is a new run)", got.Job)
		}
		wantStatus(t, "another account's job", e.signIn("owner@b.example").api("GET", "/api/v1/workspaces/acme/bulk-jobs/"+got.Job.ID, ""), 404)
		wantStatus(t, "another workspace's job", member.api("GET", "/api/v1/workspaces/beta/bulk-jobs/"+got.Job.ID, ""), 404)
	})
}

// TestBulkRetryInBrowser: on the runs list, "All N runs matching this
// filter" and "Retry from failed step" retry thousands of failed runs
// through the background job; its page shows a progress bar while it
// works, then the summary.
func TestBulkRetryInBrowser(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		n := bulkBrowserRuns
		seedFailed(t, e, n)
		ctx, stop := context.WithCancel(context.Background())
		defer stop()
		worked := make(chan struct{})
		go func() {
			defer close(worked)
			for ctx.Err() == nil {
				did, err := e.engine.WorkBulk(ctx, func(context.Context, string) (string, error) { return "active", nil })
				if err != nil && ctx.Err() == nil {
					t.Errorf("bulk worker: %v", err)
					return
				}
				if !did {
					select {
					case <-ctx.Done():
					case <-time.After(50 * time.Millisecond):
					}
				}
			}
		}()
		defer func() { stop(); <-worked }()

		b := newBrowser(t)
		browserSignIn(t, b, e.srv.URL, "owner@a.example")
		if err := chromedp.Do(b, chromedp.Navigate(e.srv.URL+"/acme/monitoring/workflow-runs?status=failed"), chromedp.WaitVisible(chromedp.CSS(`#bulk-form`))); err != nil {
			t.Fatalf("open the failed runs: %v", err)
		}
		label := evalJS[string](t, b, `document.querySelector("#bulk-form label.check").textContent`)
		if !strings.Contains(label, fmt.Sprintf("All %d runs matching this filter", n)) {
			t.Fatalf("select-all label: %q, want all %d", label, n)
		}
		screenshot(t, b, "bulk-select")
		if err := chromedp.Do(b, chromedp.Click(chromedp.CSS(`#bulk-form input[name=all]`)),
			chromedp.Click(chromedp.CSS(`#bulk-form button[value=retry]`)), chromedp.WaitVisible(chromedp.CSS(`#bulk-progress`))); err != nil {
			t.Fatalf("retry them all: %v", err)
		}
		screenshot(t, b, "bulk-progress")
		if max := evalJS[float64](t, b, `document.getElementById("bulk-progress").max`); int(max) != n {
			t.Fatalf("progress bar: max %v, want %d", max, n)
		}
		eventually(t, "the bulk retry to finish", 5*time.Minute, func() bool {
			return evalJS[bool](t, b, `(() => { const s = document.getElementById("bulk-state"); return !!s && s.textContent.startsWith("Finished"); })()`)
		})
		screenshot(t, b, "bulk-finished")
		state := evalJS[string](t, b, `document.getElementById("bulk-state").textContent`)
		if want := fmt.Sprintf("Finished: %d of %d runs — %d done, 0 skipped.", n, n, n); strings.Join(strings.Fields(state), " ") != want {
			t.Fatalf("summary: %q, want %q", state, want)
		}
		if v := evalJS[float64](t, b, `document.getElementById("bulk-progress").value`); int(v) != n {
			t.Fatalf("progress bar at the end: %v of %d", v, n)
		}
		var retries int
		must(t, e.db.Read().QueryRowContext(context.Background(), `SELECT COUNT(*) FROM runs WHERE retry_of IS NOT NULL`).Scan(&retries))
		if retries != n {
			t.Fatalf("retries recorded: %d, want %d", retries, n)
		}
	})
}
