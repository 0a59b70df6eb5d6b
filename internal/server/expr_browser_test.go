package server_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"taskjuice/internal/workflow"
)

// TestBrowserExpressionHelp types an expression into a step's field as a
// person would: "$tr" offers $trigger, Enter inserts it, the value the
// field would take against the trigger's sample shows under it as it is
// typed, and a syntax error marks the field before anything is saved.
func TestBrowserExpressionHelp(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		onceInBrowser(t)
		g := workflow.Graph{Schema: 1, Trigger: &workflow.Node{ID: "start", Kind: workflow.TriggerManual},
			Nodes: []workflow.Node{{ID: "shape", Kind: workflow.NodeTransform, Config: json.RawMessage(`{"output": {"x": 1}}`)}},
			Edges: []workflow.Edge{{From: "start", To: "shape"}}}
		wf, err := e.workflows.Create(context.Background(), e.acme, "Greeter", "", &g, "")
		must(t, err)
		ctx := newBrowser(t)
		browserSignIn(t, ctx, e.srv.URL, "owner@a.example")
		edit := e.srv.URL + "/acme/workflows/" + wf.ID + "/edit"
		err = chromedp.Do(ctx,
			chromedp.Navigate(edit),
			chromedp.WaitVisible(`form[action$="/edit/trigger/sample"] textarea[name=sample]`),
			chromedp.Evaluate[chromedp.Void](`document.querySelector('form[action$="/edit/trigger/sample"] textarea[name=sample]').value = '{"name": "Ada", "amount": 42}'`),
			chromedp.Submit(`form[action$="/edit/trigger/sample"] textarea[name=sample]`),
		)
		must(t, err)
		// The sample is kept on the server: the page shows it again.
		eventually(t, "the sample saved", 10*time.Second, func() bool {
			return e.rows(t, "step_samples", "workflow_id = $1", wf.ID) > 0
		})
		must(t, chromedp.Do(ctx, chromedp.Navigate(edit), chromedp.WaitVisible(`#step-shape textarea[name=output]`)))
		if v, _ := chromedp.Run(ctx, chromedp.Value(`form[action$="/edit/trigger/sample"] textarea[name=sample]`)); !strings.Contains(v, "Ada") {
			t.Fatalf("the saved sample: %q", v)
		}
		field := `#step-shape textarea[name=output]`
		err = chromedp.Do(ctx,
			chromedp.WaitVisible(field),
			chromedp.Evaluate[chromedp.Void](`(() => { const el = document.querySelector("#step-shape textarea[name=output]"); el.value = ""; el.focus(); })()`),
			// Typed as key events into the focused field (see below).
			chromedp.KeyEvent(`{"greet": "{{ $tr`),
			chromedp.WaitVisible(`#ed-complete li.active`),
		)
		if err != nil {
			t.Fatalf("type an expression: %v", err)
		}
		if got := text(t, ctx, `#ed-complete li.active`); got != "$trigger" {
			t.Fatalf("completion offered %q, want $trigger", got)
		}
		screenshot(t, ctx, "expression-complete")
		err = chromedp.Do(ctx,
			// Enter as the page sees it (a key event sent through the
			// DevTools protocol also types its character, which a real
			// Enter the page cancels does not).
			chromedp.Evaluate[chromedp.Void](`document.querySelector("#step-shape textarea[name=output]").dispatchEvent(new KeyboardEvent("keydown", {key: "Enter", bubbles: true, cancelable: true}))`),
			chromedp.KeyEvent(`.name }}"}`),
		)
		must(t, err)
		v, err := chromedp.Run(ctx, chromedp.Value(field))
		if err != nil || v != `{"greet": "{{ $trigger.name }}"}` {
			t.Fatalf("the field after completing: %q %v", v, err)
		}
		eventually(t, "the preview of the value", 10*time.Second, func() bool {
			s, _ := chromedp.Run(ctx, chromedp.Text(`#step-shape output.ed-preview`))
			return strings.Contains(s, `Ada`) && !strings.Contains(s, "EXPRESSION")
		})
		screenshot(t, ctx, "expression-preview")

		// Typed as key events into the focused field: the page adds the
		// preview beside it meanwhile, which a node query (SendKeys) would
		// read while the driver updates it.
		err = chromedp.Do(ctx, chromedp.KeyEvent(` {{ $trigger.( }}`))
		must(t, err)
		eventually(t, "the syntax error at the field", 10*time.Second, func() bool {
			s, _ := chromedp.Run(ctx, chromedp.Text(`#step-shape output.ed-preview`))
			inv, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("#step-shape textarea[name=output]").getAttribute("aria-invalid") || ""`))
			return strings.Contains(s, "EXPRESSION_INVALID") && inv == "true"
		})
		screenshot(t, ctx, "expression-syntax-error")
		// Nothing was saved meanwhile.
		if n := e.rows(t, "workflow_versions", "workflow_id = $1 AND graph LIKE '%greet%'", wf.ID); n != 0 {
			t.Fatal("typing saved the draft")
		}
	})
}
