package server_test

import (
	"context"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
)

// TestBrowserBuildWorkflowFromScratch builds a workflow in a real browser
// as a person would: create it, paste a sample event for the trigger,
// add a Sandbox Chat action through the "+" on the picture's arrow, pick
// the trigger's field from the data picker into its message, test it (the
// evaluated input and the output show), add a Transform through the next
// "+", pick the action's output into it and test it, publish, run it from
// its page and see the run complete. Screenshots are kept when
// TASKJUICE_SCREENSHOTS names a folder.
func TestBrowserBuildWorkflowFromScratch(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		onceInBrowser(t)
		e.runWorkers()
		owner := e.signIn("owner@a.example")
		connID := connectionFromLocation(t, owner.consent(t, "/acme/connections/new", url.Values{"app": {"sandbox-chat"}, "label": {"Team chat"}}, "Acme Chat"))
		ctx := newBrowser(t)
		base := e.srv.URL
		browserSignIn(t, ctx, base, "owner@a.example")
		js := func(script string) chromedp.Action[chromedp.Void] { return chromedp.Evaluate[chromedp.Void](script) }
		clearFlash := js(`document.querySelectorAll(".flash").forEach(f => f.remove())`)
		do := func(what string, actions ...chromedp.Action[chromedp.Void]) {
			t.Helper()
			t.Logf("%s: %s", time.Now().Format("15:04:05.000"), what)
			if err := chromedp.Do(ctx, actions...); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		}
		// choose sets a select and lets the page react as to a person's
		// choice (an autosubmitting select saves its form).
		choose := func(sel, value string) chromedp.Action[chromedp.Void] {
			return js(`(() => { const el = document.querySelector(` + strconv.Quote(sel) + `); el.value = ` + strconv.Quote(value) + `; el.dispatchEvent(new Event("change", {bubbles: true})); })()`)
		}
		setValue := func(sel, value string) chromedp.Action[chromedp.Void] {
			return js(`document.querySelector(` + strconv.Quote(sel) + `).value = ` + strconv.Quote(value))
		}

		do("create the workflow",
			chromedp.Navigate(base+"/acme/workflows"),
			chromedp.Click(`//summary[text()="New workflow"]`),
			chromedp.SendKeys(`form[action="/acme/workflows"] input[name=name]`, "Lead to chat"),
			chromedp.Submit(`form[action="/acme/workflows"] input[name=name]`),
		)
		waitFlash(t, ctx, "Workflow created.")
		edit, err := chromedp.Run(ctx, chromedp.Location())
		must(t, err)
		edit = strings.SplitN(edit, "#", 2)[0]
		wfID := strings.TrimSuffix(strings.TrimPrefix(edit, base+"/acme/workflows/"), "/edit")

		// The trigger's sample, pasted.
		do("paste a sample",
			setValue(`form[action$="/edit/trigger/sample"] textarea[name=sample]`, `{"name": "Ada Lovelace", "email": "ada@example.com"}`),
			chromedp.Click(`//button[text()="Save sample"]`),
		)
		eventually(t, "the sample saved", 10*time.Second, func() bool { return e.rows(t, "step_samples", "workflow_id = $1", wfID) == 1 })

		// An app action through the "+" after the trigger.
		// The page the saved sample comes back to, fully loaded (navigating
		// away while it still loads would abort one of the two).
		eventually(t, "the editor after saving the sample", 20*time.Second, func() bool {
			ok, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](`location.hash === "#trigger" && document.readyState === "complete" && !!document.querySelector("a.dg-plus")`))
			return ok
		})
		screenshot(t, ctx, "build-1-sample")
		do("the + after the trigger",
			chromedp.Click(`a.dg-plus`),
			chromedp.WaitReady(`#add-step input[name=after]`),
		)
		if !strings.Contains(text(t, ctx, `#add-step label`), "Add a step after the trigger") {
			t.Fatalf("the add form after the +: %q", text(t, ctx, `#add-step label`))
		}
		do("add an app action", clearFlash, setValue(`#add-step select[name=kind]`, "action"), chromedp.Click(`//button[text()="Add step"]`))
		waitFlash(t, ctx, "Step added.")
		do("choose the app", clearFlash, chromedp.WaitReady(`#step-step1 select[name=app]`), choose(`#step-step1 select[name=app]`, "sandbox-chat"))
		waitFlash(t, ctx, "Step saved.")
		do("choose the action", clearFlash, chromedp.WaitReady(`#step-step1 select[name=action]`), choose(`#step-step1 select[name=action]`, "post-message"))
		waitFlash(t, ctx, "Step saved.")
		do("fill the action",
			chromedp.WaitReady(`#step-step1 [name="input.text"]`),
			setValue(`#step-step1 input[name="input.channel"]`, "general"),
			setValue(`#step-step1 select[name=connection]`, connID),
			js(`(() => { const el = document.querySelector('#step-step1 [name="input.text"]'); el.value = "New lead: "; el.focus(); el.setSelectionRange(el.value.length, el.value.length); })()`),
			chromedp.Click(`#step-step1 details.ed-picker > summary`),
			chromedp.Click(`#step-step1 button[data-insert="{{ $trigger.name }}"]`),
		)
		v, err := chromedp.Run(ctx, chromedp.Value(`#step-step1 [name="input.text"]`))
		if err != nil || v != "New lead: {{ $trigger.name }}" {
			t.Fatalf("the message after picking: %q %v", v, err)
		}
		screenshot(t, ctx, "build-2-picked")
		do("save the action", clearFlash, chromedp.Click(`#step-step1 form.stack button[type=submit]:not([name=update])`))
		waitFlash(t, ctx, "Step saved.")
		do("test the action",
			chromedp.WaitReady(`#step-step1 form.ed-test input[name=confirm]`),
			chromedp.Click(`#step-step1 form.ed-test input[name=confirm]`),
			chromedp.Click(`#step-step1 form.ed-test button`),
			chromedp.WaitVisible(`#sample-step1 .ed-sample-output pre`),
		)
		if in := text(t, ctx, `#sample-step1 .ed-sample-input pre`); !strings.Contains(in, "New lead: Ada Lovelace") {
			t.Fatalf("the tested input: %q", in)
		}
		if out := text(t, ctx, `#sample-step1 .ed-sample-output pre`); !strings.Contains(out, "New lead: Ada Lovelace") {
			t.Fatalf("the tested output: %q", out)
		}
		screenshot(t, ctx, "build-3-tested")

		// A Transform after it, through its "+", mapping the action's output.
		do("the + after the action",
			chromedp.Click(`a.dg-plus[href^="?insert=step1"]`),
			chromedp.WaitReady(`#add-step input[name=after][value=step1]`),
			clearFlash, setValue(`#add-step select[name=kind]`, "transform"), chromedp.Click(`//button[text()="Add step"]`),
		)
		waitFlash(t, ctx, "Step added.")
		do("pick the action's output",
			chromedp.WaitReady(`#step-step2 textarea[name=output]`),
			js(`(() => { const el = document.querySelector("#step-step2 textarea[name=output]"); el.value = '{"posted": "'; el.focus(); el.setSelectionRange(el.value.length, el.value.length); })()`),
			chromedp.Click(`#step-step2 details.ed-picker > summary`),
			chromedp.Click(`#step-step2 button[data-insert^="{{ $steps.step1.data"][data-insert$=".id }}"]`),
			js(`(() => { const el = document.querySelector("#step-step2 textarea[name=output]"); el.value += '"}'; })()`),
			clearFlash, chromedp.Click(`#step-step2 form.stack button[type=submit]`),
		)
		waitFlash(t, ctx, "Step saved.")
		do("test the transform", chromedp.Click(`#step-step2 form.ed-test button`), chromedp.WaitVisible(`#sample-step2 .ed-sample-output pre`))
		if out := text(t, ctx, `#sample-step2 .ed-sample-output pre`); !strings.Contains(out, `"posted"`) || strings.Contains(out, `"posted": ""`) {
			t.Fatalf("the transform's test output: %q", out)
		}
		screenshot(t, ctx, "build-4-two-steps")

		do("publish", clearFlash, chromedp.Click(`form[action$="/publish"] button`))
		waitFlash(t, ctx, "Workflow published")
		do("run it",
			chromedp.Navigate(base+"/acme/workflows/"+wfID),
			chromedp.WaitVisible(`input[name=payload]`),
			chromedp.SendKeys(`input[name=payload]`, `{"name": "Grace Hopper"}`),
			chromedp.Click(`//button[text()="Run now"]`),
		)
		var runID string
		eventually(t, "the run completes", 30*time.Second, func() bool {
			var status string
			err := e.db.Read().QueryRowContext(context.Background(), `SELECT id, status FROM runs WHERE workflow_id = $1`, wfID).Scan(&runID, &status)
			return err == nil && status == "completed"
		})
		do("see the run", chromedp.Navigate(base+"/acme/monitoring/workflow-runs/"+wfID+"/"+runID), chromedp.WaitVisible(`.badge.run-completed`))
		screenshot(t, ctx, "build-5-run-completed")
		msgs := e.rows(t, "run_steps", "run_id = $1 AND status = 'completed'", runID)
		if msgs != 2 {
			t.Fatalf("completed steps of the run: %d, want 2", msgs)
		}
	})
}

// TestBrowserDragStepOnPicture moves a step by dragging its box on the
// picture onto a "+": the step goes where a step added by that "+" would,
// and a press on a box without dragging still opens its settings.
func TestBrowserDragStepOnPicture(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		onceInBrowser(t)
		owner := e.signIn("owner@a.example")
		base := "/api/v1/workspaces/acme/workflows"
		d := decodeDetail(t, "create", owner.api("POST", base, `{"name": "Drag", "graph": {"trigger": {"id": "trigger", "kind": "manual"},
			"nodes": [{"id": "first", "name": "First", "kind": "transform", "config": {"output": 1}},
				{"id": "second", "name": "Second", "kind": "transform", "config": {"output": 2}},
				{"id": "third", "name": "Third", "kind": "transform", "config": {"output": 3}}],
			"edges": [{"from": "trigger", "to": "first"}, {"from": "first", "to": "second"}, {"from": "second", "to": "third"}]}}`), 201)
		ctx := newBrowser(t)
		browserSignIn(t, ctx, e.srv.URL, "owner@a.example")
		edit := e.srv.URL + "/acme/workflows/" + d.Workflow.ID + "/edit"
		if err := chromedp.Do(ctx, chromedp.Navigate(edit), chromedp.WaitVisible(`svg.ed-diagram a.dg-node[href="#step-third"]`)); err != nil {
			t.Fatal(err)
		}
		screenshot(t, ctx, "drag-1-before")
		// Drag Third's box onto the "+" between the trigger and First.
		dragOnto(t, ctx, `a.dg-node[href="#step-third"] rect`, `a.dg-plus[href^="?insert=trigger"] circle`)
		waitFlash(t, ctx, "Step moved.")
		screenshot(t, ctx, "drag-2-after")
		exp, err := e.workflows.Export(context.Background(), e.acme, d.Workflow.ID)
		must(t, err)
		var order []string
		for _, n := range exp.Graph.Nodes {
			order = append(order, n.ID)
		}
		if strings.Join(order, ",") != "third,first,second" {
			t.Fatalf("after dragging Third onto the first arrow: %v, want third,first,second", order)
		}
		// A press without a drag opens the step's settings.
		if _, err := chromedp.Run(ctx, chromedp.Click(`svg.ed-diagram a.dg-node[href="#step-second"]`)); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the click opens the step", 10*time.Second, func() bool {
			loc, _ := chromedp.Run(ctx, chromedp.Location())
			return strings.HasSuffix(loc, "#step-second")
		})

		// Into a Parallel's second arm, through the "+" on its first arrow:
		// that arm has two steps now.
		d = decodeDetail(t, "create", owner.api("POST", base, `{"name": "Arms", "graph": {"trigger": {"id": "trigger", "kind": "manual"},
			"nodes": [{"id": "fan", "name": "Both", "kind": "parallel", "config": {}},
				{"id": "a", "name": "Arm A", "kind": "transform", "config": {"output": 1}},
				{"id": "b", "name": "Arm B", "kind": "transform", "config": {"output": 2}},
				{"id": "join", "name": "Join", "kind": "merge", "config": {}},
				{"id": "late", "name": "Late", "kind": "transform", "config": {"output": 3}}],
			"edges": [{"from": "trigger", "to": "fan"}, {"from": "fan", "to": "a"}, {"from": "fan", "to": "b"}, {"from": "a", "to": "join"}, {"from": "b", "to": "join"}, {"from": "join", "to": "late"}]}}`), 201)
		if err := chromedp.Do(ctx, chromedp.Navigate(e.srv.URL+"/acme/workflows/"+d.Workflow.ID+"/edit"), chromedp.WaitVisible(`svg.ed-diagram a.dg-node[href="#step-late"]`)); err != nil {
			t.Fatal(err)
		}
		dragOnto(t, ctx, `a.dg-node[href="#step-late"] rect`, `a.dg-plus[href="?insert=fan&to=b#add-step"] circle`)
		waitFlash(t, ctx, "Step moved.")
		screenshot(t, ctx, "drag-3-into-an-arm")
		exp, err = e.workflows.Export(context.Background(), e.acme, d.Workflow.ID)
		must(t, err)
		var edges []string
		for _, ed := range exp.Graph.Edges {
			edges = append(edges, ed.From+">"+ed.To)
		}
		if got := strings.Join(edges, " "); got != "trigger>fan fan>a fan>late a>join late>b b>join" {
			t.Fatalf("after dragging Late into the second arm: %s", got)
		}
	})
}

// dragOnto presses on the element from, moves the mouse in steps onto the
// element to, and lets go there.
func dragOnto(t *testing.T, ctx context.Context, from, to string) {
	t.Helper()
	centre := func(sel string) []float64 {
		p, err := chromedp.Run(ctx, chromedp.Evaluate[[]float64](`(() => { const r = document.querySelector(`+strconv.Quote(sel)+`).getBoundingClientRect(); return [r.x + r.width/2, r.y + r.height/2]; })()`))
		must(t, err)
		return p
	}
	a, b := centre(from), centre(to)
	steps := []chromedp.Action[chromedp.Void]{chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, a[0], a[1]),
		chromedp.MouseEvent(input.DispatchMouseEventTypeMousePressed, a[0], a[1], chromedp.ButtonLeft, chromedp.ClickCount(1))}
	for i := 1; i <= 8; i++ {
		x, y := a[0]+(b[0]-a[0])*float64(i)/8, a[1]+(b[1]-a[1])*float64(i)/8
		steps = append(steps, chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, x, y, chromedp.ButtonLeft))
	}
	steps = append(steps, chromedp.MouseEvent(input.DispatchMouseEventTypeMouseReleased, b[0], b[1], chromedp.ButtonLeft, chromedp.ClickCount(1)))
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatal(err)
	}
}
