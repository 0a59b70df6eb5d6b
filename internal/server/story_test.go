package server_test

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"taskjuice/internal/connection"
	"taskjuice/internal/engine"
	"taskjuice/internal/workflow"
)

// runWorkers runs the server's background workers (engine, alerts,
// reauthorizations) until the test ends, as serve does.
func (e *env) runWorkers() {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, w := range e.server.Workers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = w.Run(ctx)
		}()
	}
	e.t.Cleanup(func() { cancel(); wg.Wait() })
}

// eventually polls cond until it holds or the time is up.
func eventually(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestBrowserReauthStory walks the whole story in the browser, with the
// server's workers running: a published workflow and an agent use Sandbox
// Chat; the grant is revoked at the sandbox; runs park; the open runs page
// shows the banner and the bell without a reload; the "Paused for reauth"
// chip lists the run; the banner link leads to the broken connection;
// Reconnect goes through the sandbox's consent page; the banner goes; the
// agent run has resumed by itself; Resume on the workflow run's page takes
// it to completed. Then two connections break and the banner counts them.
func TestBrowserReauthStory(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		if !strings.HasSuffix(t.Name(), "sqlite") {
			t.Skip("one browser run is enough")
		}
		ctx := context.Background()
		owner := e.signIn("owner@a.example")
		conn := connectionFromLocation(t, owner.consent(t, "/acme/connections/new", url.Values{"app": {"sandbox-chat"}}, "Sandbox Workspace"))
		cfg, _ := json.Marshal(map[string]any{"app": "sandbox-chat", "action": "post-message", "inputs": map[string]any{"channel": "general", "text": "New lead"}})
		g := workflow.Graph{Schema: 1, Trigger: &workflow.Node{ID: "start", Kind: workflow.TriggerManual},
			Nodes: []workflow.Node{{ID: "post", Kind: workflow.NodeAction, Name: "Tell the team", Config: cfg, Connection: &workflow.Binding{ID: conn}}},
			Edges: []workflow.Edge{{From: "start", To: "post"}}}
		w, err := e.workflows.Create(ctx, e.acme, "Lead alert", "", &g, "")
		must(t, err)
		_, err = e.workflows.Publish(ctx, e.acme, w.ID, "", workflow.Checks{})
		must(t, err)
		res := owner.api("POST", "/api/v1/workspaces/acme/agents", `{"name":"Helper","instructions":"Tell the team.","tools":[{"name":"post","app":"sandbox-chat","action":"post-message","connectionId":"`+conn+`"}]}`)
		wantStatus(t, "create agent", res, 201)
		var agent struct{ Agent struct{ ID string } }
		must(t, json.Unmarshal([]byte(res.Body), &agent))
		e.runWorkers()

		status := func(id string) engine.Run {
			r, err := e.engine.Get(ctx, e.acme.ID, id)
			must(t, err)
			return r
		}
		start := func(path string) string {
			t.Helper()
			res := owner.api("POST", path, "")
			wantStatus(t, "start "+path, res, 202)
			var s struct{ RunID string }
			must(t, json.Unmarshal([]byte(res.Body), &s))
			return s.RunID
		}
		agentRun := start("/api/v1/workspaces/acme/agents/" + agent.Agent.ID + "/runs")
		eventually(t, "agent run waits for its decision", 10*time.Second, func() bool { return status(agentRun).Status == engine.StatusWaiting })

		b := newBrowser(t)
		err = chromedp.Do(b,
			chromedp.Navigate(e.srv.URL+"/signin"),
			chromedp.SendKeys(`input[name=email]`, "owner@a.example"),
			chromedp.SendKeys(`input[name=password]`, pw),
			chromedp.Submit(`input[name=password]`),
			chromedp.WaitVisible(`.tiles`),
			chromedp.Navigate(e.srv.URL+"/acme/monitoring/workflow-runs"),
			chromedp.WaitVisible(`#runs-live`),
		)
		if err != nil {
			t.Fatalf("open the runs page: %v", err)
		}
		screenshot(t, b, "story-1-runs-before")

		// The grant is revoked at the sandbox; a workflow run and the
		// agent's next tool call both find it broken and are held.
		_, err = e.sandbox.RevokeAccount("Sandbox Workspace")
		must(t, err)
		wfRun := start("/api/v1/workspaces/acme/workflows/" + w.ID + "/runs")
		wantStatus(t, "agent decision", owner.api("POST", "/api/v1/workspaces/acme/runs/"+agentRun+"/agent-decision",
			`{"toolCall":{"tool":"post","input":{"channel":"general","text":"Lead handled"}}}`), 200)
		eventually(t, "both runs held", 10*time.Second, func() bool {
			return status(wfRun).PauseReason == engine.PauseReauth && status(agentRun).PauseReason == engine.PauseReauth
		})

		// The open page shows the banner and the bell by itself.
		err = chromedp.Do(b, chromedp.WaitVisible(`.banner`))
		if err != nil {
			t.Fatalf("banner did not appear without a reload: %v", err)
		}
		if got := text(t, b, `.banner strong`); got != "A connection needs to be reauthorized" {
			t.Fatalf("banner: %q", got)
		}
		if got := text(t, b, `.banner a`); got != "Sandbox Chat reauth required" {
			t.Fatalf("banner link: %q", got)
		}
		err = chromedp.Do(b, chromedp.WaitVisible(`#bell .bell-count`))
		if err != nil {
			t.Fatalf("bell count did not appear: %v", err)
		}
		if got := text(t, b, `#bell .bell-count`); got != "1" {
			t.Fatalf("bell count: %q, want 1", got)
		}
		screenshot(t, b, "story-2-banner")

		// The bell's list holds the critical notification.
		err = chromedp.Do(b, chromedp.Click(`#bell`), chromedp.WaitVisible(`.notes`))
		if err != nil {
			t.Fatalf("open the bell: %v", err)
		}
		if got := text(t, b, `.notes`); !strings.Contains(got, "Sandbox Chat reauth required") || !strings.Contains(got, "Lead alert") {
			t.Fatalf("notifications: %q", got)
		}
		screenshot(t, b, "story-3-bell")

		// The chip lists the held run.
		err = chromedp.Do(b,
			chromedp.Navigate(e.srv.URL+"/acme/monitoring/workflow-runs"),
			chromedp.Click(`.chips a:nth-child(2)`),
			chromedp.WaitVisible(`#runs-live table`),
		)
		if err != nil {
			t.Fatalf("Paused for reauth chip: %v", err)
		}
		if got := text(t, b, `#runs-live table`); !strings.Contains(got, wfRun[:8]) || !strings.Contains(got, "Paused for reauth") {
			t.Fatalf("Paused for reauth list lacks the run: %q", got)
		}
		screenshot(t, b, "story-4-paused-for-reauth")

		// The banner link opens the connection: error, reconnection needed.
		err = chromedp.Do(b, chromedp.Click(`.banner a`), chromedp.WaitVisible(`.facts`))
		if err != nil {
			t.Fatalf("follow the banner: %v", err)
		}
		if got := text(t, b, `.facts`); !strings.Contains(got, "Reconnection needed.") || !strings.Contains(got, "Error") {
			t.Fatalf("connection page: %q", got)
		}
		screenshot(t, b, "story-5-connection-error")

		// Reconnect: the page before the consent screen names the account
		// the connection was made with, which the consent page suggests.
		err = chromedp.Do(b,
			chromedp.Click(`form[action$="/reconnect"] button`),
			chromedp.WaitVisible(`#reconnect`),
		)
		if err != nil {
			t.Fatalf("reconnect: %v", err)
		}
		if got := text(t, b, `#reconnect`); !strings.Contains(got, "This connection was made with the account “Sandbox Workspace”") {
			t.Fatalf("reconnect page: %q", got)
		}
		screenshot(t, b, "story-6-reconnect-account")
		err = chromedp.Do(b,
			chromedp.Click(`#reconnect button`),
			chromedp.WaitVisible(`button[value=allow]`),
		)
		if err != nil {
			t.Fatalf("reconnect: %v", err)
		}
		screenshot(t, b, "story-6-consent")
		err = chromedp.Do(b, chromedp.Click(`button[value=allow]`), chromedp.WaitVisible(`.facts`))
		if err != nil {
			t.Fatalf("allow: %v", err)
		}
		if got := text(t, b, `.facts`); !strings.Contains(got, "Connected and working.") {
			t.Fatalf("connection after reconnect: %q", got)
		}
		screenshot(t, b, "story-7-connected")

		// The banner goes; the agent run went on by itself and made its
		// tool call once; the workflow run waits for Resume.
		eventually(t, "agent run resumed by itself", 10*time.Second, func() bool {
			r := status(agentRun)
			return r.Status == engine.StatusWaiting && r.StepsDone == 2
		})
		if got := e.sandbox.Stats().MessagesPosted; got != 1 {
			t.Fatalf("messages posted: %d, want the agent's one", got)
		}
		if r := status(wfRun); r.Status != engine.StatusPaused {
			t.Fatalf("workflow run after reconnect: %s, want still paused", r.Status)
		}
		err = chromedp.Do(b,
			chromedp.Navigate(e.srv.URL+"/acme/monitoring/workflow-runs"),
			chromedp.WaitVisible(`#runs-live`),
		)
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, "banner gone", 10*time.Second, func() bool {
			n, err := chromedp.Run(b, chromedp.Evaluate[int](`document.querySelectorAll(".banner").length`))
			return err == nil && n == 0
		})
		screenshot(t, b, "story-8-banner-gone")

		// Resume on the workflow run's page takes it to completed, and the
		// page follows by itself.
		err = chromedp.Do(b,
			chromedp.Navigate(e.srv.URL+"/acme/monitoring/workflow-runs/"+w.ID+"/"+wfRun),
			chromedp.Click(`form[action$="/resume"] button`),
			chromedp.WaitVisible(`form[action$="/replay"]`),
		)
		if err != nil {
			t.Fatalf("resume: %v", err)
		}
		if got := text(t, b, `#run`); !strings.Contains(got, "Completed") {
			t.Fatalf("run page after Resume: %.300q", got)
		}
		if r := status(wfRun); r.Status != engine.StatusCompleted {
			t.Fatalf("workflow run: %s, want completed", r.Status)
		}
		screenshot(t, b, "story-9-run-completed")

		// Two connections break: the banner counts them and names the first.
		res = owner.api("POST", "/api/v1/workspaces/acme/connections", `{"app":"stripe","label":"Billing","fields":{"apiKey":"sk_test_story"}}`)
		wantStatus(t, "create stripe", res, 201)
		var stripe connection.Connection
		must(t, json.Unmarshal([]byte(res.Body), &stripe))
		_, err = e.sandbox.RevokeAccount("Sandbox Workspace")
		must(t, err)
		wantStatus(t, "refresh revoked", owner.api("POST", "/api/v1/connections/"+conn+"/refresh", ""), 400)
		time.Sleep(10 * time.Millisecond)
		_, err = e.connections.Transition(ctx, stripe.ID, connection.StatusError, "rejected", connection.System, nil)
		must(t, err)
		err = chromedp.Do(b, chromedp.Navigate(e.srv.URL+"/acme/monitoring/workflow-runs"))
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, "two connections in the banner", 10*time.Second, func() bool {
			s, err := chromedp.Run(b, chromedp.Evaluate[string](`(document.querySelector(".banner")||{}).textContent||""`))
			return err == nil && strings.Contains(s, "2 connections need to be reauthorized")
		})
		got := text(t, b, `.banner`)
		if !strings.Contains(got, "Sandbox Chat reauth required") || !strings.Contains(got, "and 1 more") {
			t.Fatalf("banner with two broken connections: %q", got)
		}
		screenshot(t, b, "story-10-two-broken")
	})
}
