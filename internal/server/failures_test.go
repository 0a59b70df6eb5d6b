package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"taskjuice/internal/engine"
	"taskjuice/internal/workflow"
)

// TestFailedRunsInbox: failures are grouped by workflow, step and error
// code with counts; retrying a group from the page retries its runs alone,
// which leave the inbox; another account sees none of it.
func TestFailedRunsInbox(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		rejecting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadRequest) }))
		defer rejecting.Close()
		publish := func(name, url string) string {
			g, err := workflow.ParseGraph([]byte(fmt.Sprintf(`{"schema":1,"trigger":{"id":"start","kind":"manual"},
				"nodes":[{"id":"send","kind":"http","config":{"method":"POST","url":%q,"retry":{"maxAttempts":1}}}],"edges":[{"from":"start","to":"send"}]}`, url)))
			must(t, err)
			w, err := e.workflows.Create(ctx, e.acme, name, "", &g, "")
			must(t, err)
			_, err = e.workflows.Publish(ctx, e.acme, w.ID, "", workflow.Checks{})
			must(t, err)
			return w.ID
		}
		rejected := publish("CRM sync", rejecting.URL)
		unreachable := publish("Ping", "http://127.0.0.1:1/nothing")
		for range 3 {
			_, err := e.engine.StartRun(ctx, rejected, nil, "manual", "")
			must(t, err)
		}
		for range 2 {
			_, err := e.engine.StartRun(ctx, unreachable, nil, "manual", "")
			must(t, err)
		}
		e.workAll(t)
		owner := e.signIn("owner@a.example")
		res := owner.api("GET", "/api/v1/workspaces/acme/failures", "")
		wantStatus(t, "failures", res, 200)
		var got struct{ Groups []engine.FailureGroup }
		must(t, json.Unmarshal([]byte(res.Body), &got))
		if len(got.Groups) != 2 {
			t.Fatalf("groups: %+v, want 2", got.Groups)
		}
		byWorkflow := map[string]engine.FailureGroup{}
		for _, g := range got.Groups {
			byWorkflow[g.WorkflowID] = g
		}
		crm := byWorkflow[rejected]
		if crm.Runs != 3 || crm.Node != "send" || crm.ErrorCode == "" || crm.WorkflowName != "CRM sync" || crm.FirstSeen.After(crm.LastSeen) {
			t.Fatalf("CRM group: %+v, want 3 runs failed at send with a code", crm)
		}
		if g := byWorkflow[unreachable]; g.Runs != 2 || g.ErrorCode == crm.ErrorCode {
			t.Fatalf("Ping group: %+v, want 2 runs with another code", g)
		}
		page := owner.get("/acme/monitoring/failures")
		wantStatus(t, "failures page", page, 200)
		if !strings.Contains(page.Body, "CRM sync") || !strings.Contains(page.Body, "Retry all 3") || !strings.Contains(page.Body, "Retry all 2") {
			t.Fatal("the failures page lacks a group")
		}
		wantStatus(t, "another account's inbox", e.signIn("owner@b.example").get("/acme/monitoring/failures"), 404)

		res = owner.post("/acme/monitoring/failures/bulk", url.Values{"action": {"retry"}, "workflow": {rejected}, "node": {"send"}, "code": {crm.ErrorCode}})
		if res.StatusCode != http.StatusSeeOther || !strings.Contains(res.Header.Get("Location"), "/acme/monitoring/bulk-actions/") {
			t.Fatalf("retry the group: %d to %q", res.StatusCode, res.Header.Get("Location"))
		}
		workBulk(t, e)
		job := owner.get(res.Header.Get("Location"))
		if !strings.Contains(job.Body, "3 done") {
			t.Fatalf("the group's job: %s", job.Body[strings.Index(job.Body, "<main"):][:1500])
		}
		res = owner.api("GET", "/api/v1/workspaces/acme/failures", "")
		got.Groups = nil
		must(t, json.Unmarshal([]byte(res.Body), &got))
		if len(got.Groups) != 1 || got.Groups[0].WorkflowID != unreachable {
			t.Fatalf("groups after retrying one: %+v, want only Ping's", got.Groups)
		}
		wantSentBack(t, owner, "an unknown action", owner.post("/acme/monitoring/failures/bulk", url.Values{"action": {"explode"}, "workflow": {unreachable}, "node": {"send"}, "code": {got.Groups[0].ErrorCode}}),
			"/acme/monitoring/failures", engine.MsgBulkAction)
	})
}

// TestRetentionSettings: owners and admins set how long finished runs are
// kept, on the workspace page and in the API; members read it and get
// 403; bad values are refused and change nothing.
func TestRetentionSettings(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		owner, member := e.signIn("owner@a.example"), e.signIn("member@a.example")
		page := owner.get("/acme/")
		if !strings.Contains(page.Body, "Run retention") || !strings.Contains(page.Body, "kept 30 days") || !strings.Contains(page.Body, `name="days"`) {
			t.Fatal("the workspace page lacks the retention card")
		}
		if strings.Contains(member.get("/acme/").Body, `name="days"`) {
			t.Fatal("a member sees the retention form")
		}
		wantStatus(t, "member sets retention", member.api("PUT", "/api/v1/workspaces/acme/retention", `{"days": 7, "maxRunsPerWorkflow": 1000}`), 403)
		wantStatus(t, "member posts the form", member.post("/acme/workspace/retention", url.Values{"days": {"7"}, "maxRuns": {"1000"}}), 403)
		wantAPIError(t, "too few days", owner.api("PUT", "/api/v1/workspaces/acme/retention", `{"days": 0, "maxRunsPerWorkflow": 1000}`), 422, engine.MsgRetention)
		wantSentBack(t, owner, "not a number", owner.post("/acme/workspace/retention", url.Values{"days": {"a week"}, "maxRuns": {"1000"}}), "/acme/", engine.MsgRetention)
		res := owner.api("PUT", "/api/v1/workspaces/acme/retention", `{"days": 7, "maxRunsPerWorkflow": 1000}`)
		wantStatus(t, "set retention", res, 200)
		if !strings.Contains(res.Body, `"days":7`) || !strings.Contains(member.api("GET", "/api/v1/workspaces/acme/retention", "").Body, `"maxRunsPerWorkflow":1000`) {
			t.Fatalf("retention: %s", res.Body)
		}
		wantStatus(t, "another account", e.signIn("owner@b.example").api("GET", "/api/v1/workspaces/acme/retention", ""), 404)
	})
}

// TestRunSearch: the runs list filters by workflow, how runs started, error
// code and creation dates, in the API and on the page (the filter in the
// URL); a filter that cannot be read is a 422 in the API and a message on
// the page.
func TestRunSearch(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		failing := func(name string) string {
			g, err := workflow.ParseGraph([]byte(`{"schema":1,"trigger":{"id":"start","kind":"manual"},
				"nodes":[{"id":"send","kind":"http","config":{"method":"GET","url":"http://127.0.0.1:1/x","retry":{"maxAttempts":1}}}],"edges":[{"from":"start","to":"send"}]}`))
			must(t, err)
			w, err := e.workflows.Create(ctx, e.acme, name, "", &g, "")
			must(t, err)
			_, err = e.workflows.Publish(ctx, e.acme, w.ID, "", workflow.Checks{})
			must(t, err)
			return w.ID
		}
		a, b := failing("Alpha"), failing("Beta")
		for i := range 3 {
			_, err := e.engine.StartRun(ctx, a, nil, "manual", "")
			must(t, err)
			if i < 2 {
				_, err = e.engine.StartRun(ctx, b, nil, "webhook", fmt.Sprintf("k%d", i))
				must(t, err)
			}
		}
		e.workAll(t)
		owner := e.signIn("owner@a.example")
		count := func(query string) int {
			t.Helper()
			res := owner.api("GET", "/api/v1/workspaces/acme/runs?"+query, "")
			wantStatus(t, "runs?"+query, res, 200)
			var got struct{ Runs []engine.RunRow }
			must(t, json.Unmarshal([]byte(res.Body), &got))
			return len(got.Runs)
		}
		today := time.Now().UTC().Format("2006-01-02")
		tomorrow := time.Now().UTC().Add(24 * time.Hour).Format("2006-01-02")
		for q, want := range map[string]int{
			"workflow=" + a: 3, "workflow=" + b: 2, "source=webhook": 2, "source=manual&workflow=" + b: 0,
			"error=NETWORK_ERROR": 5, "error=HTTP_500": 0, "from=" + today + "&to=" + tomorrow: 5, "from=" + tomorrow: 0,
			"status=failed&workflow=" + a + "&source=manual": 3,
		} {
			if got := count(q); got != want {
				t.Errorf("runs?%s: %d, want %d", q, got, want)
			}
		}
		wantAPIError(t, "bad date", owner.api("GET", "/api/v1/workspaces/acme/runs?from=yesterday", ""), 422, "from must be a date")
		wantAPIError(t, "reversed range", owner.api("GET", "/api/v1/workspaces/acme/runs?from="+tomorrow+"&to="+today, ""), 422, "to must be after from")
		page := owner.get("/acme/monitoring/workflow-runs?workflow=" + b + "&source=webhook")
		wantStatus(t, "filtered page", page, 200)
		if strings.Count(page.Body, `name="run" value="`) != 2 || !strings.Contains(page.Body, `All 2 runs matching this filter`) || !strings.Contains(page.Body, `name="source" value="webhook"`) {
			t.Fatalf("the filtered page does not show Beta's 2 webhook runs")
		}
		if bad := owner.get("/acme/monitoring/workflow-runs?from=yesterday"); !strings.Contains(bad.Body, "from must be a date") {
			t.Fatal("the page does not say the filter cannot be read")
		}
	})
}

// workAll has the engine work until no run is due (however many).
func (e *env) workAll(t *testing.T) {
	t.Helper()
	for {
		did, err := e.engine.Work(context.Background())
		must(t, err)
		if !did {
			return
		}
	}
}
