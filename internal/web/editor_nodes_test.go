package web

import (
	"encoding/json"
	"net/url"
	"sort"
	"strings"
	"testing"

	"taskjuice/internal/workflow"
)

// TestEditorItemAndCodeSteps: Filter, Sort, Code and Stop and Error are
// added from "Add step" and saved from their forms; a time limit that is
// not a number is refused next to its field; a condition written with
// {{ }}, a bad sort order or a bad error code are kept in the draft and
// marked at their fields (the publish gate refuses them).
func TestEditorItemAndCodeSteps(t *testing.T) {
	e := newEditorEnv(t)
	id, base := e.workflow("Orders")
	e.addSteps(base, "filter", "sort", "code", "stop-error")
	refusals := []struct {
		step    string
		form    url.Values
		message string
	}{
		{"step1", url.Values{"items": {"{{ $trigger.orders }}"}, "condition": {"{{ total > 10 }}"}}, "Write this without {{ }}"},
		{"step2", url.Values{"items": {"{{ $trigger.orders }}"}, "by": {"total"}, "order": {"sideways"}}, "Sort order is asc or desc"},
		{"step3", url.Values{"source": {"return 1"}, "timeoutMs": {"soon"}}, "whole number"},
		{"step4", url.Values{"errorCode": {"oops!"}, "message": {"x"}}, "capital letters"},
	}
	for _, r := range refusals {
		res := e.post(base+"/edit/steps/"+r.step, r.form)
		if res.Status == 422 {
			if !strings.Contains(card(res.Body, r.step), r.message) {
				t.Errorf("%s refused without %q: %.400s", r.step, r.message, card(res.Body, r.step))
			}
			continue
		}
		if r.step == "step3" {
			t.Fatalf("a time limit that is not a number was saved: %d", res.Status)
		}
		if c := card(e.get(base+"/edit").Body, r.step); !strings.Contains(c, r.message) {
			t.Errorf("%s: the draft does not mark %q: %.600s", r.step, r.message, c)
		}
	}
	for step, form := range map[string]url.Values{
		"step1": {"items": {"{{ $trigger.orders }}"}, "condition": {"total > 10"}},
		"step2": {"items": {"{{ $steps.step1.data.items }}"}, "by": {"total"}, "order": {"desc"}},
		"step3": {"source": {"return $steps.step2.data.items.length"}, "timeoutMs": {"500"}},
		"step4": {"errorCode": {"NO_ORDERS"}, "message": {"Nothing for {{ $trigger.email }}"}},
	} {
		wantSaved(t, "configure "+step, e.post(base+"/edit/steps/"+step, form), base, "step-"+step)
	}
	g := e.graph(id)
	var fc workflow.FilterConfig
	var sc workflow.SortConfig
	var cc workflow.CodeConfig
	var ec workflow.StopErrorConfig
	check(t, json.Unmarshal(g.Nodes[0].Config, &fc))
	check(t, json.Unmarshal(g.Nodes[1].Config, &sc))
	check(t, json.Unmarshal(g.Nodes[2].Config, &cc))
	check(t, json.Unmarshal(g.Nodes[3].Config, &ec))
	if fc.Condition != "total > 10" || sc.Order != "desc" || sc.By != "total" || cc.TimeoutMS != 500 || !strings.Contains(cc.Source, "length") ||
		ec.Code != "NO_ORDERS" || ec.Message != "Nothing for {{ $trigger.email }}" {
		t.Fatalf("saved: %+v %+v %+v %+v", fc, sc, cc, ec)
	}
	if c := card(e.get(base+"/edit").Body, "step3"); !strings.Contains(c, `name="source"`) || !strings.Contains(c, "No network, files or modules") {
		t.Fatalf("the Code card: %.800s", c)
	}
}

// An app action's retry setting is saved from its card (attempts and the
// first wait), shown again, cleared when emptied, and refused when it is
// not a number.
func TestEditorRetrySetting(t *testing.T) {
	e := newEditorEnv(t)
	id, base := e.workflow("Retries")
	wantSaved(t, "add action", e.post(base+"/edit/steps", url.Values{"kind": {"action"}}), base, "step-step1")
	if c := card(e.get(base+"/edit").Body, "step1"); !strings.Contains(c, `name="retryAttempts"`) {
		t.Fatalf("the action card has no retry setting: %.600s", c)
	}
	bad := e.post(base+"/edit/steps/step1", url.Values{"retryAttempts": {"many"}})
	if bad.Status != 422 || !strings.Contains(card(bad.Body, "step1"), "Attempts: Enter a whole number") {
		t.Fatalf("bad attempts: %d", bad.Status)
	}
	wantSaved(t, "retries", e.post(base+"/edit/steps/step1", url.Values{"retryAttempts": {"5"}, "retryBackoff": {"2.5"}}), base, "step-step1")
	if n := e.graph(id).Nodes[0]; n.Retry == nil || n.Retry.MaxAttempts != 5 || n.Retry.BackoffSeconds != 2.5 {
		t.Fatalf("saved retry: %+v", n.Retry)
	}
	if c := card(e.get(base+"/edit").Body, "step1"); !strings.Contains(c, `value="5"`) || !strings.Contains(c, `value="2.5"`) {
		t.Fatal("the saved retry is not shown")
	}
	wantSaved(t, "cleared", e.post(base+"/edit/steps/step1", url.Values{"retryAttempts": {""}, "retryBackoff": {""}}), base, "step-step1")
	if n := e.graph(id).Nodes[0]; n.Retry != nil {
		t.Fatalf("cleared retry kept: %+v", n.Retry)
	}
}

// Respond to Webhook is added from "Add step" and saved from its card:
// status, headers as lines, a JSON body and the wait; a body that is not
// JSON is refused at its field.
func TestEditorRespondStep(t *testing.T) {
	e := newEditorEnv(t)
	id, base := e.workflow("Answer")
	wantSaved(t, "add", e.post(base+"/edit/steps", url.Values{"kind": {"respond-webhook"}}), base, "step-step1")
	bad := e.post(base+"/edit/steps/step1", url.Values{"body": {"{not json"}})
	if bad.Status != 422 || !strings.Contains(card(bad.Body, "step1"), "The body must be JSON") {
		t.Fatalf("bad body: %d", bad.Status)
	}
	wantSaved(t, "configure", e.post(base+"/edit/steps/step1", url.Values{"status": {"202"}, "headers": {"X-Request-Id: {{ $trigger.body.id }}"},
		"body": {`{"queued": true}`}, "waitSeconds": {"5"}}), base, "step-step1")
	var c workflow.RespondConfig
	check(t, json.Unmarshal(e.graph(id).Nodes[0].Config, &c))
	if c.Status != "202" || c.Headers["X-Request-Id"] != "{{ $trigger.body.id }}" || string(c.Body) != `{"queued":true}` || c.WaitSeconds != 5 {
		t.Fatalf("saved: %+v %s", c, c.Body)
	}
}

// The picture is where steps are added: each arrow of the main path has a
// "+" that opens "Add a step" after that step, and the step goes there
// (on the arrow it was added to); a step is duplicated right after itself
// with its settings; a tested step shows its last test on the picture.
func TestEditorCanvasInsertAndDuplicate(t *testing.T) {
	e := newEditorEnv(t)
	id, base := e.workflow("Canvas")
	wantSaved(t, "first", e.post(base+"/edit/steps", url.Values{"kind": {"transform"}}), base, "step-step1")
	wantSaved(t, "second", e.post(base+"/edit/steps", url.Values{"kind": {"delay"}}), base, "step-step2")
	page := e.get(base + "/edit").Body
	for _, want := range []string{`href="?insert=trigger#add-step"`, `href="?insert=step1#add-step"`, `aria-label="Add a step after Transform"`} {
		if !strings.Contains(page, want) {
			i := strings.Index(page, "dg-plus")
			t.Fatalf("the picture lacks %q: %s", want, page[max(0, i-200):min(len(page), i+300)])
		}
	}
	form := e.get(base + "/edit?insert=step1").Body
	if !strings.Contains(form, `<input type="hidden" name="after" value="step1">`) || !strings.Contains(form, "Add a step after Transform") {
		t.Fatal("the add form does not say where the step goes")
	}
	wantSaved(t, "insert", e.post(base+"/edit/steps", url.Values{"kind": {"code"}, "after": {"step1"}}), base, "step-step3")
	g := e.graph(id)
	order := []string{}
	for _, n := range g.Nodes {
		order = append(order, n.ID)
	}
	if strings.Join(order, ",") != "step1,step3,step2" {
		t.Fatalf("order after inserting: %v", order)
	}
	edges := []string{}
	for _, ed := range g.Edges {
		edges = append(edges, ed.From+">"+ed.To)
	}
	if strings.Join(edges, ",") != "trigger>step1,step1>step3,step3>step2" {
		t.Fatalf("edges after inserting: %v", edges)
	}
	if res := e.post(base+"/edit/steps", url.Values{"kind": {"code"}, "after": {"ghost"}}); res.Status != 404 {
		t.Fatalf("after a missing step: %d", res.Status)
	}
	wantSaved(t, "insert first", e.post(base+"/edit/steps", url.Values{"kind": {"transform"}, "after": {"trigger"}}), base, "step-step4")
	wantSaved(t, "duplicate", e.post(base+"/edit/steps/step1/duplicate", nil), base, "step-step5")
	g = e.graph(id)
	order = order[:0]
	for _, n := range g.Nodes {
		order = append(order, n.ID+"="+n.Name)
	}
	if strings.Join(order, ",") != "step4=Transform,step1=Transform,step5=Transform (copy),step3=Code,step2=Delay" {
		t.Fatalf("order after duplicating: %v", order)
	}
	if string(g.Nodes[1].Config) != string(g.Nodes[2].Config) {
		t.Fatalf("the copy's settings: %s vs %s", g.Nodes[2].Config, g.Nodes[1].Config)
	}
	if res := e.post(base+"/edit/steps/ghost/duplicate", nil); res.Status != 404 {
		t.Fatalf("duplicate a missing step: %d", res.Status)
	}
}

// Parallel in the editor: the steps listed after it are its arms (as many
// as it says), each leading to the step after them, a Merge, which the
// publish gate accepts; changing the number of arms redraws the paths.
func TestEditorParallelArms(t *testing.T) {
	e := newEditorEnv(t)
	id, base := e.workflow("Fan out")
	for i, kind := range []string{"parallel", "transform", "transform", "merge", "transform"} {
		wantSaved(t, "add "+kind, e.post(base+"/edit/steps", url.Values{"kind": {kind}}), base, "step-step"+string(rune('1'+i)))
	}
	edges := func() string {
		var out []string
		for _, ed := range e.graph(id).Edges {
			out = append(out, ed.From+">"+ed.To)
		}
		return strings.Join(out, ",")
	}
	if got := edges(); got != "trigger>step1,step1>step2,step1>step3,step2>step4,step3>step4,step4>step5" {
		t.Fatalf("edges of two arms: %s", got)
	}
	page := e.get(base + "/edit").Body
	for _, s := range []string{"step1", "step4"} {
		if c := card(page, s); strings.Contains(c, "ed-problems") {
			t.Fatalf("%s has problems: %.600s", s, c)
		}
	}
	wantSaved(t, "three arms", e.post(base+"/edit/steps/step1", url.Values{"arms": {"3"}}), base, "step-step1")
	if got := edges(); got != "trigger>step1,step1>step2,step1>step3,step1>step4,step2>step5,step3>step5,step4>step5" {
		t.Fatalf("edges of three arms: %s", got)
	}
	if res := e.post(base+"/edit/steps/step1", url.Values{"arms": {"many"}}); res.Status != 422 {
		t.Fatalf("arms that are not a number: %d", res.Status)
	}
}

// The picture lays a Branch's two arms side by side on one row, joined
// below them.
func TestDiagramArmsSideBySide(t *testing.T) {
	g := workflow.Graph{Schema: 1, Trigger: &workflow.Node{ID: "start", Kind: workflow.TriggerManual},
		Nodes: []workflow.Node{{ID: "check", Kind: workflow.NodeBranch}, {ID: "yes", Kind: workflow.NodeTransform},
			{ID: "no", Kind: workflow.NodeTransform}, {ID: "join", Kind: workflow.NodeTransform}},
		Edges: []workflow.Edge{{From: "start", To: "check"}, {From: "check", To: "yes", When: "true"}, {From: "check", To: "no", When: "false"},
			{From: "yes", To: "join"}, {From: "no", To: "join"}}}
	d := drawGraph(g, nil, nil)
	at := map[string][2]int{}
	for _, b := range d.Boxes {
		at[strings.TrimPrefix(strings.TrimPrefix(b.Href, "#step-"), "#")] = [2]int{b.X, b.Y}
	}
	if at["yes"][1] != at["no"][1] || at["yes"][0] == at["no"][0] {
		t.Fatalf("the arms are not side by side: %v", at)
	}
	if at["join"][1] <= at["yes"][1] || at["check"][1] >= at["yes"][1] {
		t.Fatalf("rows: %v", at)
	}
	if d.Width < at["no"][0]+dgBoxW {
		t.Fatalf("the picture is %d wide, the second arm ends at %d", d.Width, at["no"][0]+dgBoxW)
	}
}

// addSteps adds steps of the kinds given, one after another, at the end
// of the draft (step1, step2, … in a new workflow).
func (e *editorEnv) addSteps(base string, kinds ...string) {
	e.t.Helper()
	for _, kind := range kinds {
		res := e.post(base+"/edit/steps", url.Values{"kind": {kind}})
		if res.Status != 303 {
			e.t.Fatalf("add %s: %d %.300s", kind, res.Status, res.Body)
		}
	}
}

// edgeList writes a graph's edges as "from>to" (with ":path" when named),
// sorted.
func edgeList(g workflow.Graph) string {
	var out []string
	for _, e := range g.Edges {
		s := e.From + ">" + e.To
		if e.When != "" {
			s += ":" + e.When
		}
		out = append(out, s)
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

// A Parallel step's arms may each hold several steps: "2, 1" makes the
// next two steps one arm and the step after them the other, joined at
// the step after the last arm. A "+" on an arm's first arrow or inside an
// arm adds a step to that arm; deleting one makes it shorter; arms that
// are not numbers are refused at the field.
func TestEditorParallelArmsOfSeveralSteps(t *testing.T) {
	e := newEditorEnv(t)
	id, base := e.workflow("Arms")
	e.addSteps(base, "parallel", "transform", "transform")
	// The "+" under the last arm's last step, at the end, adds where the
	// arms join.
	wantSaved(t, "add after the arms", e.post(base+"/edit/steps", url.Values{"kind": {"transform"}, "after": {"step3"}}), base, "step-step4")
	if got, want := edgeList(e.graph(id)), "step1>step2 step1>step3 step2>step4 step3>step4 trigger>step1"; got != want {
		t.Fatalf("a step after the arms: edges %s, want %s", got, want)
	}
	wantSaved(t, "add the merge", e.post(base+"/edit/steps", url.Values{"kind": {"merge"}}), base, "step-step5")
	bad := e.post(base+"/edit/steps/step1", url.Values{"arms": {"2, x"}})
	if bad.Status != 422 || !strings.Contains(card(bad.Body, "step1"), "Give the steps in each arm as whole numbers") {
		t.Fatalf("arms 2, x: %d %.500s", bad.Status, card(bad.Body, "step1"))
	}
	wantSaved(t, "arms 2, 1", e.post(base+"/edit/steps/step1", url.Values{"arms": {"2, 1"}}), base, "step-step1")
	if got, want := edgeList(e.graph(id)), "step1>step2 step1>step4 step2>step3 step3>step5 step4>step5 trigger>step1"; got != want {
		t.Fatalf("arms 2, 1: edges %s, want %s", got, want)
	}
	page := e.get(base + "/edit").Body
	if c := card(page, "step1"); !strings.Contains(c, `value="2, 1"`) {
		t.Fatalf("the Parallel card does not show its arms: %.600s", c)
	}
	if !strings.Contains(page, `href="?insert=step1&amp;to=step4#add-step"`) {
		t.Fatal("no + on the second arm's first arrow")
	}
	form := e.get(base + "/edit?insert=step1&to=step4").Body
	if !strings.Contains(form, `name="to" value="step4"`) || !strings.Contains(form, "at the start of Parallel’s arm through Transform") {
		t.Fatal("the add form does not say which arm the step starts")
	}
	wantSaved(t, "+ on the second arm", e.post(base+"/edit/steps", url.Values{"kind": {"transform"}, "after": {"step1"}, "to": {"step4"}}), base, "step-step6")
	wantSaved(t, "+ after the first arm's last step", e.post(base+"/edit/steps", url.Values{"kind": {"transform"}, "after": {"step3"}}), base, "step-step7")
	g := e.graph(id)
	if got, want := edgeList(g), "step1>step2 step1>step6 step2>step3 step3>step7 step4>step5 step6>step4 step7>step5 trigger>step1"; got != want {
		t.Fatalf("after adding to both arms: edges %s, want %s", got, want)
	}
	var pc workflow.ParallelConfig
	check(t, json.Unmarshal(g.Nodes[0].Config, &pc))
	if pc.Arms != 2 || len(pc.Steps) != 2 || pc.Steps[0] != 3 || pc.Steps[1] != 2 {
		t.Fatalf("arms after adding: %+v, want 3, 2", pc)
	}
	wantSaved(t, "duplicate in an arm", e.post(base+"/edit/steps/step4/duplicate", nil), base, "step-step8")
	wantSaved(t, "delete in an arm", e.post(base+"/edit/steps/step2/delete", nil), base, "step-step1")
	if got, want := edgeList(e.graph(id)), "step1>step3 step1>step6 step3>step7 step4>step8 step6>step4 step7>step5 step8>step5 trigger>step1"; got != want {
		t.Fatalf("after duplicating and deleting: edges %s, want %s", got, want)
	}
}

// A "+" on a Branch's "false" arrow adds a step on that path, where the
// list can take it: the step before the path's target ends its own path.
// Where the paths meet again (the true path goes on to the same step),
// there is no "+" on the false arrow, and a hand-made request is refused.
func TestEditorPlusOnSidePaths(t *testing.T) {
	e := newEditorEnv(t)
	id, base := e.workflow("Sides")
	e.addSteps(base, "branch", "transform", "transform")
	wantSaved(t, "false path", e.post(base+"/edit/steps/step1", url.Values{"condition": {"{{ $trigger.big }}"}, "falseTo": {"step3"}}), base, "step-step1")
	if strings.Contains(e.get(base+"/edit").Body, "path=false") {
		t.Fatal("a + on a false path that meets the true path again")
	}
	refused := e.post(base+"/edit/steps", url.Values{"kind": {"transform"}, "after": {"step1"}, "path": {"false"}, "to": {"step3"}})
	if refused.Status != 422 || !strings.Contains(refused.Body, "cannot be added on that path here") {
		t.Fatalf("a step on a false path the list cannot hold: %d", refused.Status)
	}
	wantSaved(t, "true path ends", e.post(base+"/edit/steps/step2", url.Values{"then": {"end"}, "output": {`{"ok": true}`}}), base, "step-step2")
	page := e.get(base + "/edit").Body
	if !strings.Contains(page, `href="?insert=step1&amp;path=false&amp;to=step3#add-step"`) || !strings.Contains(page, "Add a step on Branch’s “false” path") {
		t.Fatal("no + on the false arrow")
	}
	wantSaved(t, "+ on the false path", e.post(base+"/edit/steps", url.Values{"kind": {"transform"}, "after": {"step1"}, "path": {"false"}, "to": {"step3"}}), base, "step-step4")
	g := e.graph(id)
	if got, want := edgeList(g), "step1>step2:true step1>step4:false step4>step3 trigger>step1"; got != want {
		t.Fatalf("after adding on the false path: edges %s, want %s", got, want)
	}
}

// "Move after" on a step's card (the picture's drag posts the same) takes
// the step out of its place, and out of its arm, and puts it where a step
// added on that arrow would go; onto an arrow of its own it stays put.
func TestEditorMoveStepTo(t *testing.T) {
	e := newEditorEnv(t)
	id, base := e.workflow("Moves")
	e.addSteps(base, "transform", "transform", "parallel", "transform", "transform", "merge")
	order := func() string {
		var ids []string
		for _, n := range e.graph(id).Nodes {
			ids = append(ids, n.ID)
		}
		return strings.Join(ids, ",")
	}
	if c := card(e.get(base+"/edit").Body, "step2"); !strings.Contains(c, `<option value="trigger">the trigger</option>`) || !strings.Contains(c, `<option value="step5">`) {
		t.Fatalf("the card's Move after lacks its places: %.900s", c)
	}
	wantSaved(t, "move after the trigger", e.post(base+"/edit/steps/step2/move", url.Values{"after": {"trigger"}}), base, "step-step2")
	if got := order(); got != "step2,step1,step3,step4,step5,step6" {
		t.Fatalf("after moving step2 first: %s", got)
	}
	wantSaved(t, "onto its own arrow", e.post(base+"/edit/steps/step2/move", url.Values{"after": {"step2"}}), base, "step-step2")
	if got := order(); got != "step2,step1,step3,step4,step5,step6" {
		t.Fatalf("after moving step2 onto its own arrow: %s", got)
	}
	// Into the Parallel's second arm, at its start: that arm has two steps.
	wantSaved(t, "move into an arm", e.post(base+"/edit/steps/step1/move", url.Values{"after": {"step3"}, "to": {"step5"}}), base, "step-step1")
	g := e.graph(id)
	if got, want := edgeList(g), "step1>step5 step2>step3 step3>step1 step3>step4 step4>step6 step5>step6 trigger>step2"; got != want {
		t.Fatalf("after moving step1 into the second arm: edges %s, want %s", got, want)
	}
	// Out of it again: the arm is one step again.
	wantSaved(t, "move out of the arm", e.post(base+"/edit/steps/step1/move", url.Values{"after": {"step6"}}), base, "step-step1")
	if got, want := edgeList(e.graph(id)), "step2>step3 step3>step4 step3>step5 step4>step6 step5>step6 step6>step1 trigger>step2"; got != want {
		t.Fatalf("after moving step1 out of the arm: edges %s, want %s", got, want)
	}
	if res := e.post(base+"/edit/steps/step1/move", url.Values{"after": {"nope"}}); res.Status != 404 {
		t.Fatalf("move after a step that is not there: %d", res.Status)
	}
}
