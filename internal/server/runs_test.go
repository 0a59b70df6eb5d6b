package server_test

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"taskjuice/internal/engine"
	"taskjuice/internal/workflow"
)

func TestRunsAPIAndPage(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		g, err := workflow.ParseGraph([]byte(`{"schema":1,"trigger":{"id":"start","kind":"manual"},
			"nodes":[{"id":"wait","kind":"approval","config":{"message":"Go?"}}],"edges":[{"from":"start","to":"wait"}]}`))
		must(t, err)
		w, err := e.workflows.Create(ctx, e.acme, "Approvals", "", &g, "")
		must(t, err)
		_, err = e.workflows.Publish(ctx, e.acme, w.ID, "", workflow.Checks{})
		must(t, err)

		member := e.signIn("member@a.example")
		res := member.api("POST", "/api/v1/workspaces/acme/workflows/"+w.ID+"/runs", `{"lead":"Ada"}`)
		wantStatus(t, "start a run", res, 202)
		var started struct{ RunID string }
		must(t, json.Unmarshal([]byte(res.Body), &started))
		for {
			did, err := e.engine.Work(ctx)
			must(t, err)
			if !did {
				break
			}
		}
		got := member.api("GET", "/api/v1/workspaces/acme/runs/"+started.RunID, "")
		wantStatus(t, "get run", got, 200)
		var body struct {
			Run   engine.Run
			Steps []engine.Step
		}
		must(t, json.Unmarshal([]byte(got.Body), &body))
		if body.Run.Status != engine.StatusWaiting || len(body.Steps) != 1 || string(body.Run.TriggerPayload) != `{"lead":"Ada"}` {
			t.Fatalf("run: %+v", body)
		}
		page := member.get("/acme/monitoring/workflow-runs?status=waiting")
		wantStatus(t, "runs page", page, 200)
		if !strings.Contains(page.Body, started.RunID[:8]) || !strings.Contains(page.Body, "Approvals") {
			t.Fatal("runs page lacks the run")
		}
		wantStatus(t, "resume a waiting run", member.api("POST", "/api/v1/workspaces/acme/runs/"+started.RunID+"/resume", ""), 409)
		wantStatus(t, "replay an unfinished run", member.api("POST", "/api/v1/workspaces/acme/runs/"+started.RunID+"/replay", ""), 409)
		wantStatus(t, "approve", member.api("POST", "/api/v1/workspaces/acme/runs/"+started.RunID+"/approve", `{"comment":"ok"}`), 200)
		wantStatus(t, "another account", e.signIn("owner@b.example").api("GET", "/api/v1/workspaces/acme/runs/"+started.RunID, ""), 404)
		wantStatus(t, "another workspace", member.api("GET", "/api/v1/workspaces/beta/runs/"+started.RunID, ""), 404)
		wantStatus(t, "bad status", member.api("GET", "/api/v1/workspaces/acme/runs?status=nope", ""), 422)
		wantStatus(t, "bad payload", member.api("POST", "/api/v1/workspaces/acme/workflows/"+w.ID+"/runs", `{"x":`), 400)
	})
}

func TestRunPage(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		g, err := workflow.ParseGraph([]byte(`{"schema":1,"trigger":{"id":"start","kind":"manual"},
			"nodes":[{"id":"ok","kind":"approval","name":"Manager approves","config":{"message":"Go?"}},
			         {"id":"boom","kind":"http","config":{"method":"GET","url":"http://127.0.0.1:1/nothing"}}],
			"edges":[{"from":"start","to":"ok"},{"from":"ok","to":"boom"}]}`))
		must(t, err)
		w, err := e.workflows.Create(ctx, e.acme, "Approvals", "", &g, "")
		must(t, err)
		_, err = e.workflows.Publish(ctx, e.acme, w.ID, "", workflow.Checks{})
		must(t, err)
		id, err := e.engine.StartRun(ctx, w.ID, []byte(`{"lead":"Ada"}`), "manual", "")
		must(t, err)
		drain := func() {
			for {
				did, err := e.engine.Work(ctx)
				must(t, err)
				if !did {
					return
				}
			}
		}
		drain()
		member := e.signIn("member@a.example")
		base := "/acme/monitoring/workflow-runs/" + w.ID + "/" + id
		page := member.get(base)
		wantStatus(t, "run page", page, 200)
		for _, want := range []string{"Monitoring / ", "Workflow " + w.ID[:8] + " / Run " + id[:8], "Progress", "0 / 2 steps", "Execution Steps", "Manager approves", "&#34;lead&#34;: &#34;Ada&#34;", "Waiting for approval", "Cancel"} {
			if !strings.Contains(page.Body, want) {
				t.Errorf("run page lacks %q", want)
			}
		}
		if strings.Contains(page.Body, ">Resume<") || strings.Contains(page.Body, ">Replay<") {
			t.Error("a waiting run offers Resume or Replay")
		}
		wantSentBack(t, member, "resume a waiting run", member.post(base+"/resume", nil), base, "")
		wantRedirect(t, "approve", member.post(base+"/approve", url.Values{"comment": {"fine"}}), base)
		// The HTTP step fails (after its retries): the page shows the error.
		deadline := time.Now().Add(15 * time.Second)
		for {
			drain()
			if r, _ := e.engine.Get(ctx, e.acme.ID, id); r.Status.Terminal() || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		page = member.get(base)
		for _, want := range []string{"Execution Error", "NETWORK_ERROR", "(retryable)", ">Replay<"} {
			if !strings.Contains(page.Body, want) {
				t.Errorf("failed run page lacks %q", want)
			}
		}
		res := member.post(base+"/replay", nil)
		if res.StatusCode != 303 || !strings.HasPrefix(res.Header.Get("Location"), "/acme/monitoring/workflow-runs/"+w.ID+"/") || strings.HasSuffix(res.Header.Get("Location"), id) {
			t.Fatalf("replay: %d to %q", res.StatusCode, res.Header.Get("Location"))
		}
		// Retry from the failed step: the approval is kept, the HTTP step
		// runs again in a new run that links back.
		if !strings.Contains(page.Body, "Retry from failed step") || !strings.Contains(page.Body, "runs the live version") {
			t.Error("failed run page offers no retry from the failed step, or does not say which version it ran")
		}
		apiRetry := "/api/v1/workspaces/acme/runs/" + id + "/retry"
		wantStatus(t, "retry on an unknown version", member.api("POST", apiRetry, `{"version":"newest"}`), 400)
		wantStatus(t, "retry from another account", e.signIn("owner@b.example").api("POST", apiRetry, ""), 404)
		wantStatus(t, "retry from another workspace", member.api("POST", "/api/v1/workspaces/beta/runs/"+id+"/retry", ""), 404)
		res = member.post(base+"/retry", url.Values{"version": {"original"}})
		loc := res.Header.Get("Location")
		if res.StatusCode != 303 || !strings.HasPrefix(loc, "/acme/monitoring/workflow-runs/"+w.ID+"/") || strings.HasSuffix(loc, id) {
			t.Fatalf("retry: %d to %q", res.StatusCode, loc)
		}
		retryID := loc[strings.LastIndex(loc, "/")+1:]
		retried, err := e.engine.Get(ctx, e.acme.ID, retryID)
		must(t, err)
		if retried.RetryOf != id || retried.StepsDone != 1 {
			t.Errorf("retry: of %q with %d steps done, want of %s with the approval kept", retried.RetryOf, retried.StepsDone, id)
		}
		if page := member.get(loc); !strings.Contains(page.Body, "retry of") || !strings.Contains(page.Body, id[:8]) {
			t.Error("the retry's page does not link back to the failed run")
		}
		if page := member.get(base); !strings.Contains(page.Body, "Retried as") || !strings.Contains(page.Body, retryID[:8]) {
			t.Error("the failed run's page does not show its retry")
		}
		res2 := member.api("POST", apiRetry, `{"version":"live"}`)
		wantStatus(t, "retry through the API", res2, 202)
		wantStatus(t, "another workflow id in the path", member.get("/acme/monitoring/workflow-runs/"+id+"/"+id), 404)
		wantStatus(t, "another workspace", member.get("/beta/monitoring/workflow-runs/"+w.ID+"/"+id), 404)
		wantStatus(t, "another account", e.signIn("owner@b.example").get(base), 404)
	})
}
