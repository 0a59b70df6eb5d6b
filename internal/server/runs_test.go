package server_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

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
