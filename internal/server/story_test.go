package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
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

// viewport is a browser window size the story is walked at.
type viewport struct {
	name          string
	width, height int
}

var viewports = []viewport{{"desktop", 1280, 900}, {"phone", 390, 844}}

// storyPage reads what a person sees, in a browser walking a story.
type storyPage struct {
	t    *testing.T
	b    context.Context
	base string // the server's URL
	vp   viewport
	shot int
}

// see waits until the element sel holds every one of want, and fails with
// what it holds instead.
func (p *storyPage) see(what, sel string, want ...string) {
	p.t.Helper()
	var got string
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, _ = chromedp.Run(p.b, chromedp.Evaluate[string](`(() => { const el = document.querySelector(`+strconv.Quote(sel)+`); return el ? el.innerText : ""; })()`))
		missing := ""
		for _, w := range want {
			if !strings.Contains(got, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			p.snap("failed")
			p.t.Fatalf("%s (%s): %s reads %q, want it to hold %q", what, p.vp.name, sel, got, missing)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// notSee fails if the element sel holds any of gone (an absent element
// holds nothing).
func (p *storyPage) notSee(what, sel string, gone ...string) {
	p.t.Helper()
	got, err := chromedp.Run(p.b, chromedp.Evaluate[string](`(() => { const el = document.querySelector(`+strconv.Quote(sel)+`); return el ? el.innerText : ""; })()`))
	if err != nil {
		p.t.Fatalf("%s: read %s: %v", what, sel, err)
	}
	for _, g := range gone {
		if strings.Contains(got, g) {
			p.snap("failed")
			p.t.Fatalf("%s (%s): %s still reads %q, which is no longer true: %q", what, p.vp.name, sel, g, got)
		}
	}
}

// open loads a page of the server.
func (p *storyPage) open(path, waitFor string) {
	p.t.Helper()
	if err := chromedp.Do(p.b, chromedp.Navigate(p.base+path), chromedp.WaitVisible(waitFor)); err != nil {
		p.t.Fatalf("open %s: %v", path, err)
	}
}

// click presses a button or link and waits for waitFor on the next page.
func (p *storyPage) click(what, sel, waitFor string) {
	p.t.Helper()
	mark := chromedp.Evaluate[chromedp.Void](`document.body.dataset.before = "1"`)
	if err := chromedp.Do(p.b, mark, chromedp.Click(sel)); err != nil {
		p.t.Fatalf("%s: click %s: %v", what, sel, err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		fresh, _ := chromedp.Run(p.b, chromedp.Evaluate[bool](`!!document.body && document.body.dataset.before !== "1" && !!document.querySelector(`+strconv.Quote(waitFor)+`)`))
		if fresh {
			return
		}
		if time.Now().After(deadline) {
			p.snap("failed")
			p.t.Fatalf("%s: after clicking %s, no new page with %s", what, sel, waitFor)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// at checks that the address bar holds a page's address (not an action's),
// and that reloading it gives the same page again, not a dead end.
func (p *storyPage) at(what, path string) {
	p.t.Helper()
	loc, err := chromedp.Run(p.b, chromedp.Location())
	if err != nil {
		p.t.Fatal(err)
	}
	if strings.TrimPrefix(loc, p.base) != path {
		p.t.Fatalf("%s (%s): the address bar reads %q, want %q", what, p.vp.name, strings.TrimPrefix(loc, p.base), path)
	}
	if err := chromedp.Do(p.b, chromedp.Reload(), chromedp.WaitReady(`main`)); err != nil {
		p.t.Fatalf("%s: reload: %v", what, err)
	}
	title, _ := chromedp.Run(p.b, chromedp.Title())
	again, _ := chromedp.Run(p.b, chromedp.Location())
	if strings.HasPrefix(title, "Not Found") || strings.HasPrefix(title, "Method Not Allowed") || again != loc {
		p.t.Fatalf("%s (%s): reloading %s gave %q at %s", what, p.vp.name, path, title, again)
	}
}

// snap keeps a screenshot named after the viewport and the step.
func (p *storyPage) snap(name string) {
	p.shot++
	screenshot(p.t, p.b, fmt.Sprintf("story-%s-%02d-%s", p.vp.name, p.shot, name))
}

// TestBrowserReauthStory walks the whole story in the browser, on a
// desktop and a phone viewport, with the server's workers running, and
// reads the words after every transition: a published workflow and an
// agent use Sandbox Chat; the grant is revoked at the sandbox; runs park;
// the open runs page shows the banner and the bell without a reload; the
// alert counts the runs it holds now; each held run says what will move it
// (Resume, or nothing for an agent); "Mark all read" leaves a quieter
// reminder while the connection is broken; a refused refresh comes back to
// the connection's own address; Reconnect goes through the sandbox's
// consent page; the reminder goes, the held run says it can be resumed, the
// agent run has resumed by itself; Resume takes the run to completed; a run
// cancelled while held no longer says it is held. Then two connections
// break and the banner counts them. After every action the address bar
// holds a page that reloads as itself.
func TestBrowserReauthStory(t *testing.T) {
	eachViewport(t, reauthStory)
}

// eachViewport walks a browser story once per viewport, on SQLite: the
// pages behave the same on both databases.
func eachViewport(t *testing.T, story func(t *testing.T, e *env, vp viewport)) {
	for _, vp := range viewports {
		t.Run(vp.name, func(t *testing.T) {
			each(t, func(t *testing.T, e *env) {
				if !strings.HasSuffix(t.Name(), "sqlite") {
					t.Skip("one browser run per viewport is enough")
				}
				story(t, e, vp)
			})
		})
	}
}

func reauthStory(t *testing.T, e *env, vp viewport) {
	ctx := context.Background()
	owner := e.signIn("owner@a.example")
	conn := connectionFromLocation(t, owner.consent(t, "/acme/connections/new", url.Values{"app": {"sandbox-chat"}}, "Sandbox Workspace"))
	connPage := "/acme/connections/" + conn
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
	runPage := func(id string) string {
		return "/acme/monitoring/workflow-runs/" + status(id).WorkflowID + "/" + id
	}
	agentRun := start("/api/v1/workspaces/acme/agents/" + agent.Agent.ID + "/runs")
	eventually(t, "agent run waits for its decision", 10*time.Second, func() bool { return status(agentRun).Status == engine.StatusWaiting })

	p := &storyPage{t: t, b: newBrowserSized(t, vp.width, vp.height), base: e.srv.URL, vp: vp}
	err = chromedp.Do(p.b,
		chromedp.Navigate(e.srv.URL+"/signin"),
		chromedp.SendKeys(`input[name=email]`, "owner@a.example"),
		chromedp.SendKeys(`input[name=password]`, pw),
		chromedp.Submit(`input[name=password]`),
		chromedp.WaitVisible(`.tiles`),
	)
	if err != nil {
		t.Fatalf("sign in: %v", err)
	}
	p.open("/acme/monitoring/workflow-runs", `#runs-live`)
	p.snap("runs-before")

	// The grant is revoked at the sandbox; a workflow run and the agent's
	// next tool call both find it broken and are held.
	_, err = e.sandbox.RevokeAccount("Sandbox Workspace")
	must(t, err)
	wfRun := start("/api/v1/workspaces/acme/workflows/" + w.ID + "/runs")
	wantStatus(t, "agent decision", owner.api("POST", "/api/v1/workspaces/acme/runs/"+agentRun+"/agent-decision",
		`{"toolCall":{"tool":"post","input":{"channel":"general","text":"Lead handled"}}}`), 200)
	eventually(t, "both runs held", 10*time.Second, func() bool {
		return status(wfRun).PauseReason == engine.PauseReauth && status(agentRun).PauseReason == engine.PauseReauth
	})

	// The open page shows the banner and the bell by itself.
	p.see("banner without a reload", `.banner strong`, "A connection needs to be reauthorized")
	p.see("banner link", `.banner a`, "Sandbox Chat reauth required")
	p.see("bell", `#bell .bell-count`, "1")
	p.snap("banner")

	// The bell's list holds the critical notification, counting both
	// held runs as they are now.
	p.click("open the bell", `#bell`, `.notes`)
	p.see("notification", `.notes`, "Sandbox Chat reauth required", `The Sandbox Chat connection "Sandbox Chat" needs to be reconnected.`, "Lead alert", "2 runs are held until then.")
	p.notSee("notification", `.notes`, "1 run is held")
	p.snap("bell")

	// The chip lists the held runs.
	p.open("/acme/monitoring/workflow-runs?status=paused&reason=reauth", `#runs-live table`)
	p.see("Paused for reauth list", `#runs-live table`, wfRun[:8], agentRun[:8], "Paused for reauth")
	p.snap("paused-for-reauth")

	// Each held run says what will move it.
	p.open(runPage(wfRun), `#hold`)
	p.see("held workflow run", `#hold`, "Paused for reauth: Sandbox Chat · Sandbox Chat — Reconnection needed.", "Reconnect it, then press Resume to go on from the held step.")
	p.snap("held-run")
	p.open(runPage(agentRun), `#hold`)
	p.see("held agent run", `#hold`, "Reconnection needed.", "This agent run goes on by itself once the connection is reconnected; nobody needs to press anything.")
	p.notSee("held agent run", `#hold`, "press Resume", "Resume once")
	p.snap("held-agent-run")

	// "Mark all read" empties the bell and the banner, but the broken
	// connection keeps a quieter reminder on the runs area and the
	// Connections page until it works again.
	p.open("/acme/notifications", `.notes`)
	p.click("mark all read", `form[action$="/notifications/read"] button`, `.notes`)
	p.at("after mark all read", "/acme/notifications")
	p.open("/acme/monitoring/workflow-runs", `#runs-live`)
	if n, _ := chromedp.Run(p.b, chromedp.Evaluate[int](`document.querySelectorAll(".banner").length`)); n != 0 {
		t.Fatalf("banner after mark all read: %d, want none", n)
	}
	p.see("reminder on the runs page", `.reminder`, "Still waiting to be reconnected: Sandbox Chat reauth required.", "You marked the alert read; this stays until the connection works again.")
	p.snap("reminder-runs")
	p.open("/acme/connections", `.reminder`)
	p.see("reminder on the Connections page", `.reminder`, "Still waiting to be reconnected: Sandbox Chat reauth required.")
	p.see("Connections page", `main`, "Reconnection needed.")
	p.snap("reminder-connections")

	// The reminder leads to the connection: error, reconnection needed,
	// no promise of a token renewal.
	p.click("follow the reminder", `.reminder a`, `.facts`)
	p.see("connection page", `.facts`, "Error", "Reconnection needed.")
	p.notSee("connection page", `.facts`, "Access token renews", "Connected and working.")
	p.snap("connection-error")

	// Refresh is refused; the refusal shows on the connection's own page,
	// whose address reloads as itself.
	p.click("refresh a broken connection", `form[action$="/refresh"] button`, `.alert-error`)
	p.see("refused refresh", `.alert-error`, "Connection cannot be refreshed. Please reconnect your connection.")
	p.at("after a refused refresh", connPage)
	p.notSee("reloaded connection page", `main`, "Connection cannot be refreshed.")
	p.see("reloaded connection page", `.facts`, "Reconnection needed.")
	p.snap("refresh-refused")

	// Reconnect: the page before the consent screen names the account the
	// connection was made with, which the consent screen suggests.
	p.click("reconnect", `form[action$="/reconnect"] button`, `#reconnect`)
	p.see("reconnect page", `#reconnect`, "This connection was made with the account “Sandbox Workspace”")
	p.snap("reconnect-account")
	p.click("continue to the app", `#reconnect button`, `button[value=allow]`)
	p.see("consent screen", `body`, "Sandbox Chat wants to access your account")
	p.snap("consent")
	p.click("allow", `button[value=allow]`, `.facts`)
	p.see("connection after reconnect", `.facts`, "Active", "Connected and working.", "Access token renews")
	p.notSee("connection after reconnect", `.facts`, "Reconnection needed.")
	p.at("after reconnect", connPage)
	p.snap("connected")

	// The reminder goes; the agent run went on by itself and made its tool
	// call once; the workflow run says it can be resumed now.
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
	p.open("/acme/monitoring/workflow-runs", `#runs-live`)
	eventually(t, "banner and reminder gone", 10*time.Second, func() bool {
		n, err := chromedp.Run(p.b, chromedp.Evaluate[int](`document.querySelectorAll(".banner, .reminder").length`))
		return err == nil && n == 0
	})
	p.snap("reminder-gone")
	p.open("/acme/connections", `main`)
	p.notSee("Connections page after reconnect", `main`, "Still waiting to be reconnected", "Reconnection needed.")
	p.open("/acme/notifications", `.notes`)
	p.see("resolved alert", `.notes`, "Resolved", "It works again since")
	p.notSee("resolved alert", `.notes`, "held until then")
	p.open(runPage(agentRun), `#run`)
	p.notSee("agent run after reconnect", `#run`, "Paused for reauth")
	p.open(runPage(wfRun), `#hold`)
	p.see("held run after reconnect", `#hold`, "Paused for reauth: Sandbox Chat · Sandbox Chat — Connected and working.", "It is connected again: press Resume to go on from the held step.")
	p.notSee("held run after reconnect", `#hold`, "Reconnection needed.", "Reconnect it")
	p.snap("held-run-mended")

	// Resume takes it to completed, and the page follows by itself.
	p.click("resume", `form[action$="/resume"] button`, `form[action$="/replay"]`)
	p.see("run after Resume", `#run`, "Completed")
	p.notSee("run after Resume", `#run`, "Paused for reauth")
	p.at("after resume", runPage(wfRun))
	if r := status(wfRun); r.Status != engine.StatusCompleted {
		t.Fatalf("workflow run: %s, want completed", r.Status)
	}
	p.snap("run-completed")

	// A run cancelled while held no longer says it is held.
	_, err = e.sandbox.RevokeAccount("Sandbox Workspace")
	must(t, err)
	heldRun := start("/api/v1/workspaces/acme/workflows/" + w.ID + "/runs")
	eventually(t, "third run held", 10*time.Second, func() bool { return status(heldRun).PauseReason == engine.PauseReauth })
	p.open(runPage(heldRun), `#hold`)
	p.see("third held run", `#hold`, "Reconnection needed.", "Reconnect it, then press Resume")
	p.click("cancel", `form[action$="/cancel"] button`, `form[action$="/replay"]`)
	p.see("cancelled run", `main`, "Run cancelled.")
	p.see("cancelled run", `#run`, "Cancelled", "Stopped", "The connection needed to be reconnected; the run was held at this step.")
	p.notSee("cancelled run", `#run`, "Paused for reauth", "Resume", "the run is held until then", "Paused")
	p.at("after cancel", runPage(heldRun))
	p.open("/acme/monitoring/workflow-runs", `#runs-live table`)
	row := `#runs-live tr[data-run="` + heldRun + `"]`
	p.see("cancelled run in the list", row, "Cancelled")
	p.notSee("cancelled run in the list", row, "Paused for reauth")
	p.snap("run-cancelled")

	// Reconnecting as another account is a decision: a run held now stays
	// held, the connection page and the run page say why, and "Release
	// them anyway" lets it go on.
	keptRun := start("/api/v1/workspaces/acme/workflows/" + w.ID + "/runs")
	eventually(t, "run held before the swap", 10*time.Second, func() bool { return status(keptRun).PauseReason == engine.PauseReauth })
	p.open(connPage, `.facts`)
	p.click("reconnect again", `form[action$="/reconnect"] button`, `#reconnect`)
	p.click("continue to the app", `#reconnect button`, `button[value=allow]`)
	p.see("consent screen suggests the account", `body`, "asked to sign in as Sandbox Workspace")
	if err := chromedp.Do(p.b, chromedp.SetValue(`input[name=account]`, "Other Team")); err != nil {
		t.Fatalf("choose another account: %v", err)
	}
	p.click("allow as another account", `button[value=allow]`, `#account-hold`)
	p.see("account changed", `main`, "Reconnected — to a different account than before. The runs it held are kept held")
	p.see("account hold", `#account-hold`, "Reconnected as “Other Team” instead of “Sandbox Workspace”.", "Release them anyway")
	p.at("after a reconnect as another account", connPage)
	p.snap("account-changed")
	eventually(t, "the reconnect seen by the engine", 10*time.Second, func() bool {
		var open int
		must(t, e.db.Read().QueryRowContext(ctx, `SELECT COUNT(*) FROM connection_signals s WHERE s.connection_id = $1 AND s.kind = 'reauthorized'
			AND NOT EXISTS (SELECT 1 FROM signal_consumption c WHERE c.signal_id = s.id AND c.consumer = 'engine')`, conn).Scan(&open))
		return open == 0
	})
	if r := status(keptRun); r.Status != engine.StatusPaused {
		t.Fatalf("run after a reconnect as another account: %s, want kept paused", r.Status)
	}
	p.open(runPage(keptRun), `#hold`)
	p.see("kept run", `#hold`, "Connected and working.", "Still held: its connection was reconnected as “Other Team” instead of “Sandbox Workspace”")
	p.notSee("kept run", `#hold`, "press Resume", "Reconnect it")
	p.snap("kept-run")
	p.open(connPage, `#account-hold`)
	p.click("release them anyway", `#account-hold button`, `.flash`)
	p.see("released", `.flash`, "Released. The held runs go on as after a reconnect")
	p.at("after release", connPage)
	p.notSee("connection after release", `main`, "Release them anyway")
	p.open(runPage(keptRun), `#hold`)
	p.see("released run", `#hold`, "It is connected again: press Resume to go on from the held step.")
	p.notSee("released run", `#hold`, "Still held")
	p.snap("released-run")

	// Two connections break: the banner counts them and names the first.
	res = owner.api("POST", "/api/v1/workspaces/acme/connections", `{"app":"stripe","label":"Billing","fields":{"apiKey":"sk_test_story"}}`)
	wantStatus(t, "create stripe", res, 201)
	var stripe connection.Connection
	must(t, json.Unmarshal([]byte(res.Body), &stripe))
	_, err = e.sandbox.RevokeAccount("Other Team")
	must(t, err)
	wantStatus(t, "refresh of the revoked grant", owner.api("POST", "/api/v1/connections/"+conn+"/refresh", ""), 400)
	time.Sleep(10 * time.Millisecond) // the second alert is the newer one
	_, err = e.connections.Transition(ctx, stripe.ID, connection.StatusError, "rejected", connection.System, nil)
	must(t, err)
	p.open("/acme/monitoring/workflow-runs", `#runs-live`)
	p.see("two connections in the banner", `.banner`, "2 connections need to be reauthorized", "Sandbox Chat reauth required", "and 1 more")
	p.snap("two-broken")
}
