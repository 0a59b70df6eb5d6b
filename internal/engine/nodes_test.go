package engine_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
	"taskjuice/internal/engine"
	"taskjuice/internal/expr"
	"taskjuice/internal/workflow"
)

// publishChain publishes a manual workflow running nodes one after another
// with expressions on, and returns its id.
func (f *fixture) publishChain(nodes ...workflow.Node) string {
	f.t.Helper()
	var edges []workflow.Edge
	prev := "start"
	for _, n := range nodes {
		edges = append(edges, workflow.Edge{From: prev, To: n.ID})
		prev = n.ID
	}
	return f.publishGraph(nodes, edges)
}

func asCompile(err error, ce **workflow.CompileError) bool {
	c, ok := err.(*workflow.CompileError)
	if ok {
		*ce = c
	}
	return ok
}

// runChain starts the workflow with payload, works it to its end and
// returns the run and its steps' outputs by node.
func (f *fixture) runChain(wfID, payload string) (engine.Run, map[string]string) {
	f.t.Helper()
	id, err := f.eng.StartRun(f.ctx, wfID, json.RawMessage(payload), "manual", "")
	must(f.t, err)
	f.drain()
	return f.runSteps(id)
}

// runSteps returns a run and its steps' outputs by node.
func (f *fixture) runSteps(id string) (engine.Run, map[string]string) {
	f.t.Helper()
	steps, err := f.eng.Steps(f.ctx, f.ws.ID, id)
	must(f.t, err)
	out := map[string]string{}
	for _, s := range steps {
		out[s.NodeID] = string(s.Output)
	}
	return f.run(id), out
}

func node(id string, kind workflow.Kind, cfg string) workflow.Node {
	return workflow.Node{ID: id, Kind: kind, Config: json.RawMessage(cfg)}
}

const orders = `{"orders": [
	{"id": "a", "total": 30, "customer": {"name": "Grace"}},
	{"id": "b", "total": 5, "customer": {"name": "Ada"}},
	{"id": "c", "total": 120, "customer": {"name": "Edsger"}},
	{"id": "d", "customer": {"name": "Barbara"}},
	{"id": "e", "total": 30, "customer": {"name": "Alan"}}]}`

// Filter keeps the items meeting its condition, Sort orders them (equal
// keys keep their order, missing ones go last), and the next step reads
// the result; a list that is not one, or a condition that fails on an
// item, is a clear step error.
func TestFilterAndSortNodes(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		wf := f.publishChain(
			node("big", workflow.NodeFilter, `{"items": "{{ $trigger.orders }}", "condition": "total >= 30 or $not($exists(total))"}`),
			node("ranked", workflow.NodeSort, `{"items": "{{ $steps.big.data.items }}", "by": "total", "order": "desc"}`),
			node("byname", workflow.NodeSort, `{"items": "{{ $trigger.orders }}", "by": "customer.name"}`),
			node("ids", workflow.NodeTransform, `{"output": {"ranked": "{{ $steps.ranked.data.items.id }}", "byname": "{{ $steps.byname.data.items.id }}", "dropped": "{{ $steps.big.data.dropped }}"}}`),
		)
		run, out := f.runChain(wf, orders)
		if run.Status != engine.StatusCompleted {
			t.Fatalf("run %s: %+v", run.Status, run.Error)
		}
		if want := `{"byname":["b","e","d","c","a"],"dropped":1,"ranked":["c","a","e","d"]}`; out["ids"] != want {
			t.Fatalf("filtered and sorted: %s, want %s", out["ids"], want)
		}
		if !strings.Contains(out["big"], `"count":4`) {
			t.Fatalf("filter output: %s", out["big"])
		}

		run, _ = f.runChain(wf, `{"orders": "none"}`)
		if run.Status != engine.StatusFailed || run.Error.Code != "NOT_A_LIST" {
			t.Fatalf("not a list: %s %+v", run.Status, run.Error)
		}
		bad := f.publishChain(node("odd", workflow.NodeFilter, `{"items": "{{ $trigger.orders }}", "condition": "$number(customer.name) > 1"}`))
		run, _ = f.runChain(bad, orders)
		if run.Status != engine.StatusFailed || !strings.HasPrefix(run.Error.Message, "Item 0:") {
			t.Fatalf("a condition failing on an item: %s %+v", run.Status, run.Error)
		}
	})
}

// Filter, Sort, Code and Stop and Error refuse bad settings at publish,
// each with a message at its field.
func TestNewNodesValidate(t *testing.T) {
	cases := []struct {
		kind          workflow.Kind
		config, field string
		message       string
	}{
		{workflow.NodeFilter, `{"items": "", "condition": "x > 1"}`, "items", "Enter the list of items"},
		{workflow.NodeFilter, `{"items": "{{ $trigger.a }}", "condition": ""}`, "condition", "Enter the condition"},
		{workflow.NodeFilter, `{"items": "{{ $trigger.a }}", "condition": "{{ x > 1 }}"}`, "condition", "Write this without {{ }}"},
		{workflow.NodeFilter, `{"items": "{{ $trigger.a }}", "condition": "x > "}`, "condition", ""},
		{workflow.NodeFilter, `{"items": "{{ $trigger.a }}", "where": "x"}`, "config", "unknown field"},
		{workflow.NodeSort, `{"items": "{{ $trigger.a }}", "by": "x", "order": "up"}`, "order", "Sort order is asc or desc"},
		{workflow.NodeSort, `{"items": "{{ $trigger.a }}", "by": ""}`, "by", "Enter what to sort by"},
		{workflow.NodeCode, `{"source": "  "}`, "source", "Write the code to run"},
		{workflow.NodeCode, `{"source": "return 1", "timeoutMs": 60000}`, "timeoutMs", "at most 10000 ms"},
		{workflow.NodeStopError, `{"code": "bad code", "message": "x"}`, "code", "capital letters"},
		{workflow.NodeStopError, `{"code": "NO_CUSTOMER", "message": ""}`, "message", "Say why the run stops"},
	}
	for _, c := range cases {
		g := workflow.Graph{Schema: 1, Trigger: &workflow.Node{ID: "start", Kind: workflow.TriggerManual},
			Nodes: []workflow.Node{node("n", c.kind, c.config)}, Edges: []workflow.Edge{{From: "start", To: "n"}}}
		problems := workflow.Validate(g, workflow.Checks{Expressions: expr.CompileJSON})
		found := false
		for _, p := range problems {
			if p.NodeID == "n" && p.Field == c.field && strings.Contains(p.Message, c.message) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s %s: problems %+v, want one at %q saying %q", c.kind, c.config, problems, c.field, c.message)
		}
	}
	// A Code step's source may hold braces a template would read.
	g := workflow.Graph{Schema: 1, Trigger: &workflow.Node{ID: "start", Kind: workflow.TriggerManual},
		Nodes: []workflow.Node{node("n", workflow.NodeCode, `{"source": "const o = {{a: 1}.a: 2}; return \"{{ not a template\""}`)}, Edges: []workflow.Edge{{From: "start", To: "n"}}}
	if p := workflow.Validate(g, workflow.Checks{Expressions: expr.CompileJSON}); len(p) != 0 {
		t.Fatalf("code with braces: %+v", p)
	}
}

// Stop and Error fails the run with its code and the message's
// expressions evaluated; nothing after it runs, and it is not retried.
func TestStopAndErrorNode(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		wf := f.publishChain(
			node("check", workflow.NodeStopError, `{"code": "CUSTOMER_MISSING", "message": "No customer for {{ $trigger.email }}"}`),
			node("after", workflow.NodeTransform, `{"output": {"x": 1}}`),
		)
		run, out := f.runChain(wf, `{"email": "ada@example.com"}`)
		if run.Status != engine.StatusFailed || run.Error.Code != "CUSTOMER_MISSING" || run.Error.Message != "No customer for ada@example.com" || run.Error.Retryable {
			t.Fatalf("stopped run: %s %+v", run.Status, run.Error)
		}
		if _, ran := out["after"]; ran {
			t.Fatal("a step after Stop and Error ran")
		}
	})
}

// The Code step: the run's data in, its return value out, console.log
// kept; a thrown error, a syntax error, an endless loop (stopped at its
// time limit), runaway memory (stopped at its memory limit) and any reach
// for the network, files or modules each fail with their own code.
func TestCodeNode(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		src := `console.log("orders:", $trigger.orders.length);
const total = $trigger.orders.reduce((s, o) => s + (o.total || 0), 0);
return { total, first: $steps.pick.data.first, names: $trigger.orders.map(o => o.customer.name.toUpperCase()) };`
		cfg, _ := json.Marshal(map[string]any{"source": src})
		wf := f.publishChain(
			node("pick", workflow.NodeTransform, `{"output": {"first": "{{ $trigger.orders[0].id }}"}}`),
			node("code", workflow.NodeCode, string(cfg)),
			node("use", workflow.NodeTransform, `{"output": {"total": "{{ $steps.code.data.total }}"}}`),
		)
		run, out := f.runChain(wf, orders)
		if run.Status != engine.StatusCompleted {
			t.Fatalf("code run: %s %+v", run.Status, run.Error)
		}
		if want := `{"total":185,"first":"a","names":["GRACE","ADA","EDSGER","BARBARA","ALAN"]}`; out["code"] != want {
			t.Fatalf("code output %s, want %s", out["code"], want)
		}
		if out["use"] != `{"total":185}` {
			t.Fatalf("the next step read %s", out["use"])
		}
		steps, _ := f.eng.Steps(f.ctx, f.ws.ID, run.ID)
		for _, s := range steps {
			if s.NodeID == "code" && s.Console != "orders: 5\n" {
				t.Fatalf("console: %q", s.Console)
			}
		}
	})
}

// codeCall runs one Code step's source through the executor as a run
// would, with limits.
func codeCall(t *testing.T, source string, timeoutMS int) (engine.Outcome, error) {
	t.Helper()
	cfg, _ := json.Marshal(map[string]any{"source": source, "timeoutMs": timeoutMS})
	exec := engine.Builtins(nil, nil, nil)[workflow.NodeCode]
	var console strings.Builder
	return exec(context.Background(), engine.Call{Node: node("code", workflow.NodeCode, string(cfg)), Config: cfg, Input: json.RawMessage(`{"n": 2}`), Console: &console})
}

func wantCodeError(t *testing.T, what string, err error, code, message string) {
	t.Helper()
	se, ok := err.(*engine.StepError)
	if !ok || se.Code != code || !strings.Contains(se.Message, message) {
		t.Fatalf("%s: %v, want %s containing %q", what, err, code, message)
	}
}

func TestCodeNodeLimits(t *testing.T) {
	out, err := codeCall(t, `return $input.n * 21`, 0)
	if err != nil || string(out.Output.(json.RawMessage)) != "42" {
		t.Fatalf("simple code: %v %v", out.Output, err)
	}
	_, err = codeCall(t, "const a = 1;\nthrow new Error('no customer')", 0)
	wantCodeError(t, "thrown", err, "CODE_ERROR", "no customer")
	_, err = codeCall(t, "let x = ;", 0)
	wantCodeError(t, "syntax", err, "CODE_SYNTAX", "line 1")

	start := time.Now()
	_, err = codeCall(t, `while (true) {}`, 300)
	wantCodeError(t, "endless loop", err, "CODE_TIMEOUT", "longer than 300ms")
	if took := time.Since(start); took > 20*time.Second {
		t.Fatalf("the endless loop was stopped after %s", took)
	}

	_, err = codeCall(t, `const keep = []; while (true) { keep.push(new Array(100000).fill("x")); }`, 10000)
	wantCodeError(t, "runaway memory", err, "CODE_MEMORY_LIMIT", "more than 64 MiB")

	for what, src := range map[string]string{
		"a module":     `const fs = require("fs"); return fs.readFileSync("/etc/passwd", "utf8")`,
		"the network":  `return fetch("http://127.0.0.1:1/")`,
		"a socket":     `return new WebSocket("ws://127.0.0.1:1/")`,
		"a request":    `const x = new XMLHttpRequest(); x.open("GET", "http://127.0.0.1:1/"); return 1`,
		"a process":    `return process.env`,
		"a timer":      `setTimeout(() => 1, 1); return 1`,
		"an import":    `return import("fs")`,
		"Go's runtime": `return Deno.readTextFile("/etc/passwd")`,
	} {
		_, err := codeCall(t, src, 0)
		se, ok := err.(*engine.StepError)
		if !ok || (se.Code != "CODE_ERROR" && se.Code != "CODE_SYNTAX") {
			t.Errorf("%s: %v, want a refusal", what, err)
		}
	}
	_, err = codeCall(t, `function f(n) { return f(n + 1) } return f(0)`, 0)
	wantCodeError(t, "deep recursion", err, "CODE_ERROR", "")
	out, err = codeCall(t, `console.log("nothing returned")`, 0)
	if err != nil || out.Output != nil {
		t.Fatalf("no return: %v %v", out.Output, err)
	}
}

// Retries are a setting of every step with an external effect: an app
// action set to 5 attempts with a 30 s backoff rides out four 503s from
// the app, waiting 30, 60, 120 and 240 s, and every attempt sends the one
// idempotency key; the same setting on a step without an effect is
// refused at publish.
func TestRetrySettingOnAppActions(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		var mu sync.Mutex
		var keys []string
		fails := 4
		f.intercept = func(w http.ResponseWriter, r *http.Request) bool {
			if r.Method != http.MethodPost || !strings.Contains(r.URL.Path, "/api/") {
				return false
			}
			mu.Lock()
			defer mu.Unlock()
			keys = append(keys, r.Header.Get("Idempotency-Key"))
			if fails > 0 {
				fails--
				w.WriteHeader(http.StatusServiceUnavailable)
				return true
			}
			return false
		}
		n := f.bound(post("hello"))
		n.Retry = &workflow.RetryPolicy{MaxAttempts: 5, BackoffSeconds: 30}
		wf := f.publish([]workflow.Node{n})
		id, err := f.eng.StartRun(f.ctx, wf, nil, "manual", "")
		must(t, err)
		var waits []time.Duration
		for range 10 {
			f.drain()
			r := f.run(id)
			if r.Status.Terminal() {
				break
			}
			var due time.Time
			must(t, d.Read().QueryRowContext(f.ctx, `SELECT due_at FROM runs WHERE id = $1`, id).Scan(&due))
			waits = append(waits, due.Sub(f.clk.Now()).Round(time.Second))
			f.clk.Advance(due.Sub(f.clk.Now()))
		}
		if r := f.run(id); r.Status != engine.StatusCompleted {
			t.Fatalf("run %s %+v, want completed on the fifth attempt", r.Status, r.Error)
		}
		want := []time.Duration{30 * time.Second, 60 * time.Second, 120 * time.Second, 240 * time.Second}
		if len(waits) != 4 || waits[0] != want[0] || waits[1] != want[1] || waits[2] != want[2] || waits[3] != want[3] {
			t.Fatalf("waits between attempts: %v, want %v", waits, want)
		}
		if len(keys) != 5 || keys[0] == "" || keys[4] != keys[0] {
			t.Fatalf("idempotency keys: %v", keys)
		}

		bad := node("shape", workflow.NodeTransform, `{"output": {"x": 1}}`)
		bad.Retry = &workflow.RetryPolicy{MaxAttempts: 3}
		tooMany := f.bound(post("x"))
		tooMany.Retry = &workflow.RetryPolicy{MaxAttempts: 11}
		g := workflow.Graph{Schema: 1, Trigger: &workflow.Node{ID: "start", Kind: workflow.TriggerManual},
			Nodes: []workflow.Node{bad, tooMany}, Edges: []workflow.Edge{{From: "start", To: "shape"}, {From: "shape", To: "post"}}}
		msgs := ""
		for _, p := range workflow.Validate(g, workflow.Checks{}) {
			msgs += p.NodeID + ": " + p.Message + "\n"
		}
		if !strings.Contains(msgs, "shape: Retries are a setting of steps with an external effect") || !strings.Contains(msgs, "post: Retries: 1–10 attempts") {
			t.Fatalf("retry settings refused: %s", msgs)
		}
	})
}

// publishGraph publishes a manual workflow of nodes and edges with
// expressions on.
func (f *fixture) publishGraph(nodes []workflow.Node, edges []workflow.Edge) string {
	f.t.Helper()
	f.eng = engine.New(f.d, f.wfs, engine.Builtins(f.cat, nil, nil), engine.Expressions(expr.Limits{}), engine.Options{})
	g := workflow.Graph{Schema: 1, Trigger: &workflow.Node{ID: "start", Kind: workflow.TriggerManual}, Nodes: nodes, Edges: edges}
	w, err := f.wfs.Create(f.ctx, f.ws, "Arms", "", &g, "")
	must(f.t, err)
	_, err = f.wfs.Publish(f.ctx, f.ws, w.ID, "", workflow.Checks{Expressions: expr.CompileJSON})
	var ce *workflow.CompileError
	if asCompile(err, &ce) {
		f.t.Fatalf("publish: %+v", ce.Problems)
	}
	must(f.t, err)
	return w.ID
}

// A Parallel step starts its arms; the Merge they lead into runs once,
// after the longer arm too, and combines their items by key, by position
// or one after another; the step after it reads the result. A Merge
// whose key is missing from an item fails the run with a clear error.
func TestParallelAndMerge(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		for _, c := range []struct{ mode, want string }{
			{`"key", "key": "id"`, `[{"id":1,"x":"a1","y":"b1"},{"id":2,"x":"a2","y":"b2"}]`},
			{`"position"`, `[{"id":2,"x":"a1","y":"b2"},{"id":1,"x":"a2","y":"b1"}]`},
			{`"append"`, `[{"id":1,"x":"a1"},{"id":2,"x":"a2"},{"id":2,"y":"b2"},{"id":1,"y":"b1"}]`},
		} {
			wf := f.publishGraph([]workflow.Node{
				node("fan", workflow.NodeParallel, `{}`),
				node("a", workflow.NodeTransform, `{"output": [{"id": 1, "x": "a1"}, {"id": 2, "x": "a2"}]}`),
				node("b1", workflow.NodeTransform, `{"output": {"ready": true}}`),
				node("b2", workflow.NodeTransform, `{"output": {"items": [{"id": 2, "y": "b2"}, {"id": 1, "y": "b1"}]}}`),
				node("join", workflow.NodeMerge, `{"mode": `+c.mode+`}`),
				node("after", workflow.NodeTransform, `{"output": {"n": "{{ $steps.join.data.count }}"}}`),
			}, []workflow.Edge{{From: "start", To: "fan"}, {From: "fan", To: "a"}, {From: "fan", To: "b1"}, {From: "b1", To: "b2"},
				{From: "a", To: "join"}, {From: "b2", To: "join"}, {From: "join", To: "after"}})
			run, out := f.runChain(wf, `{}`)
			if run.Status != engine.StatusCompleted {
				t.Fatalf("%s: run %s %+v", c.mode, run.Status, run.Error)
			}
			var got struct{ Items json.RawMessage }
			must(t, json.Unmarshal([]byte(out["join"]), &got))
			if string(got.Items) != c.want {
				t.Fatalf("merge by %s: %s, want %s", c.mode, got.Items, c.want)
			}
			steps, err := f.eng.Steps(f.ctx, f.ws.ID, run.ID)
			must(t, err)
			var order []string
			for _, s := range steps {
				order = append(order, s.NodeID)
			}
			if strings.Join(order, ",") != "fan,a,b1,b2,join,after" {
				t.Fatalf("steps ran as %v: the merge must run once, after both arms", order)
			}
		}
		bad := f.publishGraph([]workflow.Node{
			node("fan", workflow.NodeParallel, `{}`),
			node("a", workflow.NodeTransform, `{"output": [{"id": 1}]}`),
			node("b", workflow.NodeTransform, `{"output": [{"name": "no id"}]}`),
			node("join", workflow.NodeMerge, `{"mode": "key", "key": "id"}`),
		}, []workflow.Edge{{From: "start", To: "fan"}, {From: "fan", To: "a"}, {From: "fan", To: "b"}, {From: "a", To: "join"}, {From: "b", To: "join"}})
		run, _ := f.runChain(bad, `{}`)
		if run.Status != engine.StatusFailed || run.Error.Code != "MERGE_KEY_MISSING" || !strings.Contains(run.Error.Message, `Item 0 of arm 2 has no "id"`) {
			t.Fatalf("merge on a missing key: %s %+v", run.Status, run.Error)
		}
	})
}

// Parallel and Merge refuse shapes they cannot run.
func TestParallelAndMergeValidate(t *testing.T) {
	check := func(nodes []workflow.Node, edges []workflow.Edge, nodeID, message string) {
		t.Helper()
		g := workflow.Graph{Schema: 1, Trigger: &workflow.Node{ID: "start", Kind: workflow.TriggerManual}, Nodes: nodes, Edges: edges}
		for _, p := range workflow.Validate(g, workflow.Checks{Expressions: expr.CompileJSON}) {
			if p.NodeID == nodeID && strings.Contains(p.Message, message) {
				return
			}
		}
		t.Errorf("no %q at %s in %+v", message, nodeID, workflow.Validate(g, workflow.Checks{}))
	}
	one := []workflow.Node{node("fan", workflow.NodeParallel, `{}`), node("a", workflow.NodeTransform, `{"output": 1}`), node("join", workflow.NodeMerge, `{"mode": "key"}`)}
	edges := []workflow.Edge{{From: "start", To: "fan"}, {From: "fan", To: "a"}, {From: "a", To: "join"}}
	check(one, edges, "fan", "starts two or more arms")
	check(one, edges, "join", "joins two or more arms")
	check(one, edges, "join", "Name the field")
	check([]workflow.Node{node("join", workflow.NodeMerge, `{"mode": "zip"}`)}, []workflow.Edge{{From: "start", To: "join"}}, "join", "Merge by append, position or key")
	check([]workflow.Node{node("each", workflow.NodeLoop, `{"items": "{{ $trigger.x }}"}`), node("fan", workflow.NodeParallel, `{}`), node("done", workflow.NodeTransform, `{"output": 1}`)},
		[]workflow.Edge{{From: "start", To: "each"}, {From: "each", To: "fan", When: "each"}, {From: "each", To: "done", When: "done"}}, "fan", "cannot sit inside a Loop's steps yet")
}

// Loops nest: an inner Loop runs all its iterations within each iteration
// of the outer one, each step of each iteration is its own step row (and
// idempotency key), $meta.loop is the innermost item, and the outer loop's
// done path runs once at the end; an empty inner list goes straight to
// the inner done path within the outer iteration.
func TestNestedLoops(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		wf := f.publishGraph([]workflow.Node{
			node("rows", workflow.NodeLoop, `{"items": "{{ $trigger.rows }}"}`),
			node("cells", workflow.NodeLoop, `{"items": "{{ $meta.loop.item.cells }}"}`),
			node("cell", workflow.NodeTransform, `{"output": {"v": "{{ $meta.loop.item }}", "i": "{{ $meta.loop.index }}"}}`),
			node("row_done", workflow.NodeTransform, `{"output": {"row": "{{ $steps.rows.data.count }}", "last": "{{ $steps.cell.data.v }}"}}`),
			node("all_done", workflow.NodeTransform, `{"output": {"ok": true}}`),
		}, []workflow.Edge{{From: "start", To: "rows"}, {From: "rows", To: "cells", When: "each"}, {From: "cells", To: "cell", When: "each"},
			{From: "cells", To: "row_done", When: "done"}, {From: "rows", To: "all_done", When: "done"}})
		run, _ := f.runChain(wf, `{"rows": [{"cells": ["a", "b"]}, {"cells": []}, {"cells": ["c"]}]}`)
		if run.Status != engine.StatusCompleted {
			t.Fatalf("nested loops: %s %+v", run.Status, run.Error)
		}
		steps, err := f.eng.Steps(f.ctx, f.ws.ID, run.ID)
		must(t, err)
		var got []string
		keys := map[string]bool{}
		for _, s := range steps {
			got = append(got, s.NodeID+"="+string(s.Output))
			if keys[s.IdempotencyKey] {
				t.Fatalf("two steps share the key %s", s.IdempotencyKey)
			}
			keys[s.IdempotencyKey] = true
		}
		want := []string{
			`rows={"count":3,"items":[{"cells":["a","b"]},{"cells":[]},{"cells":["c"]}]}`,
			`cells@rows#0={"count":2,"items":["a","b"]}`,
			`cell@rows#0@cells#0={"i":0,"v":"a"}`,
			`cell@rows#0@cells#1={"i":1,"v":"b"}`,
			`row_done@rows#0={"last":"b","row":3}`,
			`cells@rows#1={"count":0,"items":[]}`,
			`row_done@rows#1={"last":"b","row":3}`,
			`cells@rows#2={"count":1,"items":["c"]}`,
			`cell@rows#2@cells#0={"i":0,"v":"c"}`,
			`row_done@rows#2={"last":"c","row":3}`,
			`all_done={"ok":true}`,
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("steps:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})
}

// clockedEngine gives the fixture an engine with expressions on, the
// fixture's clock and hc for HTTP steps.
func (f *fixture) clockedEngine(hc *http.Client) {
	f.eng = engine.New(f.d, f.wfs, engine.Builtins(f.cat, nil, hc), engine.Expressions(expr.Limits{}), engine.Options{Now: f.clk.Now})
}

// startGraph publishes a manual workflow of nodes and edges, gives the
// fixture a clocked engine (hc for HTTP steps), starts a run with an empty
// payload and works it as far as it goes; it returns the run's id.
func (f *fixture) startGraph(nodes []workflow.Node, edges []workflow.Edge, hc *http.Client) string {
	f.t.Helper()
	wf := f.publishGraph(nodes, edges)
	f.clockedEngine(hc)
	id, err := f.eng.StartRun(f.ctx, wf, json.RawMessage(`{}`), "manual", "")
	must(f.t, err)
	f.drain()
	return id
}

// barrier is an HTTP receiver that answers each request only once n
// requests are in (or after a deadline): requests that arrive one after
// another, never together, see "together": false.
func barrier(t *testing.T, n int) string {
	t.Helper()
	var mu sync.Mutex
	arrived := 0
	all := make(chan struct{})
	ts, _ := counter(t, "127.0.0.1", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		if arrived++; arrived == n {
			close(all)
		}
		mu.Unlock()
		together := true
		select {
		case <-all:
		case <-time.After(20 * time.Second):
			together = false
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"path": r.URL.Path, "together": together, "key": r.Header.Get("Idempotency-Key")})
	})
	return ts.URL
}

// The arms of a Parallel run at the same time: each arm's request waits
// at the receiver until the other's is in, so they complete only if both
// are in flight together. Inside an arm, $input is the arm's step before,
// not the other arm's.
func TestParallelArmsRunTogether(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		url := barrier(t, 2)
		wf := f.publishGraph([]workflow.Node{
			node("fan", workflow.NodeParallel, `{}`),
			node("a", workflow.NodeHTTP, `{"method": "POST", "url": "`+url+`/a"}`),
			node("a2", workflow.NodeTransform, `{"output": {"after": "{{ $input.body.path }}"}}`),
			node("b", workflow.NodeHTTP, `{"method": "POST", "url": "`+url+`/b"}`),
			node("join", workflow.NodeMerge, `{"mode": "append"}`),
		}, []workflow.Edge{{From: "start", To: "fan"}, {From: "fan", To: "a"}, {From: "a", To: "a2"}, {From: "fan", To: "b"},
			{From: "a2", To: "join"}, {From: "b", To: "join"}})
		f.clockedEngine(privateOK)
		run, out := f.runChain(wf, `{}`)
		if run.Status != engine.StatusCompleted {
			t.Fatalf("run %s %+v", run.Status, run.Error)
		}
		for _, arm := range []string{"a", "b"} {
			var got struct {
				Body struct {
					Path     string
					Together bool
					Key      string
				}
			}
			must(t, json.Unmarshal([]byte(out[arm]), &got))
			if !got.Body.Together || got.Body.Path != "/"+arm || got.Body.Key != run.ID+":"+arm {
				t.Fatalf("arm %s: %s; want its request in flight with the other arm's, under its own key", arm, out[arm])
			}
		}
		if out["a2"] != `{"after":"/a"}` {
			t.Fatalf("a2 read $input %s; want its own arm's step before (/a)", out["a2"])
		}
		var merged struct{ Count int }
		must(t, json.Unmarshal([]byte(out["join"]), &merged))
		if merged.Count != 2 {
			t.Fatalf("merge: %s; want both arms", out["join"])
		}
	})
}

// A Delay in one arm does not hold the other: the other arm runs to the
// join while the first sleeps, the run waits until the Delay ends, then
// the join runs once with both arms.
func TestParallelArmSleepsAlone(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		id := f.startGraph([]workflow.Node{
			node("fan", workflow.NodeParallel, `{}`),
			node("wait", workflow.NodeDelay, `{"duration": "1h"}`),
			node("a", workflow.NodeTransform, `{"output": [{"arm": "slow"}]}`),
			node("b", workflow.NodeTransform, `{"output": [{"arm": "quick"}]}`),
			node("b2", workflow.NodeTransform, `{"output": {"items": "{{ $input }}"}}`),
			node("join", workflow.NodeMerge, `{"mode": "append"}`),
		}, []workflow.Edge{{From: "start", To: "fan"}, {From: "fan", To: "wait"}, {From: "wait", To: "a"}, {From: "fan", To: "b"},
			{From: "b", To: "b2"}, {From: "a", To: "join"}, {From: "b2", To: "join"}}, nil)
		if r := f.run(id); r.Status != engine.StatusWaiting {
			t.Fatalf("while the delay sleeps: run %s; want waiting", r.Status)
		}
		steps, err := f.eng.Steps(f.ctx, f.ws.ID, id)
		must(t, err)
		got := map[string]engine.StepStatus{}
		for _, s := range steps {
			got[s.NodeID] = s.Status
		}
		if got["b"] != engine.StepCompleted || got["b2"] != engine.StepCompleted || got["wait"] != engine.StepWaiting {
			t.Fatalf("while the delay sleeps: steps %v; want the other arm done and the delay waiting", got)
		}
		if _, ran := got["join"]; ran {
			t.Fatal("the join ran before the sleeping arm arrived")
		}
		f.clk.Advance(59 * time.Minute)
		f.drain()
		if r := f.run(id); r.Status != engine.StatusWaiting {
			t.Fatalf("before the delay ends: run %s; want waiting", r.Status)
		}
		f.clk.Advance(2 * time.Minute)
		f.drain()
		r := f.run(id)
		if r.Status != engine.StatusCompleted {
			t.Fatalf("after the delay: run %s %+v; want completed", r.Status, r.Error)
		}
		_, out := f.runSteps(id)
		if !strings.Contains(out["join"], `"items":[{"arm":"slow"},{"arm":"quick"}]`) {
			t.Fatalf("join: %s; want both arms' items", out["join"])
		}
	})
}

// An Approval in one arm while a Delay sleeps in the other: the decision
// completes the approval alone (the Delay keeps its time), and the join
// runs once the Delay ends.
func TestParallelApprovalBesideADelay(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		id := f.startGraph([]workflow.Node{
			node("fan", workflow.NodeParallel, `{}`),
			node("wait", workflow.NodeDelay, `{"duration": "1h"}`),
			node("ask", workflow.NodeApproval, `{"message": "Go?"}`),
			node("join", workflow.NodeMerge, `{}`),
		}, []workflow.Edge{{From: "start", To: "fan"}, {From: "fan", To: "wait"}, {From: "fan", To: "ask"}, {From: "wait", To: "join"}, {From: "ask", To: "join"}}, nil)
		if r := f.run(id); r.Status != engine.StatusWaiting || r.WaitReason != "approval" {
			t.Fatalf("before the decision: %s (%s); want waiting for the approval", r.Status, r.WaitReason)
		}
		must(t, f.eng.Decide(f.ctx, f.ws.ID, id, "", true, "ok"))
		f.drain()
		r, out := f.runSteps(id)
		if r.Status != engine.StatusWaiting || r.WaitReason != "delay" || !strings.Contains(out["ask"], `"approved":true`) || !strings.Contains(out["wait"], "waitedUntil") {
			t.Fatalf("after the decision: %s (%s), ask %s, wait %s; want the delay still sleeping", r.Status, r.WaitReason, out["ask"], out["wait"])
		}
		f.clk.Advance(61 * time.Minute)
		f.drain()
		if r := f.run(id); r.Status != engine.StatusCompleted {
			t.Fatalf("after the delay: %s %+v", r.Status, r.Error)
		}
	})
}

// An arm that fails for good fails the run with its error; the other
// arm's step, run at the same time, is still on record, and the join never
// runs. An arm whose request fails once and is retried waits for its
// retry while the other arm's result is kept; the join runs after it.
func TestParallelArmFailsOrRetries(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		wf := f.publishGraph([]workflow.Node{
			node("fan", workflow.NodeParallel, `{}`),
			node("stop", workflow.NodeStopError, `{"code": "NO_GO", "message": "Stopped in one arm"}`),
			node("b", workflow.NodeTransform, `{"output": {"b": true}}`),
			node("join", workflow.NodeMerge, `{}`),
		}, []workflow.Edge{{From: "start", To: "fan"}, {From: "fan", To: "stop"}, {From: "fan", To: "b"}, {From: "stop", To: "join"}, {From: "b", To: "join"}})
		f.clockedEngine(privateOK)
		r, out := f.runChain(wf, `{}`)
		if r.Status != engine.StatusFailed || r.Error == nil || r.Error.Code != "NO_GO" {
			t.Fatalf("an arm stopped with an error: run %s %+v", r.Status, r.Error)
		}
		if out["b"] != `{"b":true}` {
			t.Fatalf("the other arm's step: %q; want it on record", out["b"])
		}
		if _, ran := out["join"]; ran {
			t.Fatal("the join ran after an arm failed")
		}

		var calls atomic.Int64
		flaky, _ := counter(t, "127.0.0.1", func(w http.ResponseWriter, r *http.Request) {
			if calls.Add(1) == 1 {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			_, _ = w.Write([]byte(`{"ok": true}`))
		})
		call := node("call", workflow.NodeHTTP, `{"method": "POST", "url": "`+flaky.URL+`"}`)
		call.Retry = &workflow.RetryPolicy{MaxAttempts: 3, BackoffSeconds: 30}
		id := f.startGraph([]workflow.Node{
			node("fan", workflow.NodeParallel, `{}`), call,
			node("b", workflow.NodeTransform, `{"output": {"b": true}}`),
			node("join", workflow.NodeMerge, `{}`),
		}, []workflow.Edge{{From: "start", To: "fan"}, {From: "fan", To: "call"}, {From: "fan", To: "b"}, {From: "call", To: "join"}, {From: "b", To: "join"}}, privateOK)
		r, out = f.runSteps(id)
		if r.Status != engine.StatusRunning || out["b"] != `{"b":true}` || calls.Load() != 1 {
			t.Fatalf("after the first failure: run %s, b %q, %d calls; want running (the retry due), b on record, 1 call", r.Status, out["b"], calls.Load())
		}
		f.clk.Advance(31 * time.Second)
		f.drain()
		r, out = f.runSteps(id)
		if r.Status != engine.StatusCompleted || calls.Load() != 2 || !strings.Contains(out["join"], `"count":2`) {
			t.Fatalf("after the retry: run %s %+v, %d calls, join %s", r.Status, r.Error, calls.Load(), out["join"])
		}
	})
}

// An Approval holds only its arm: the other arm runs to the join (a Delay
// in it ends at its time although no one has decided yet); the run waits
// for the decision, and the join runs once it is taken.
func TestParallelApprovalHoldsOnlyItsArm(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		id := f.startGraph([]workflow.Node{
			node("fan", workflow.NodeParallel, `{}`),
			node("ask", workflow.NodeApproval, `{"message": "Go?"}`),
			node("wait", workflow.NodeDelay, `{"duration": "1h"}`),
			node("b", workflow.NodeTransform, `{"output": {"b": true}}`),
			node("join", workflow.NodeMerge, `{}`),
		}, []workflow.Edge{{From: "start", To: "fan"}, {From: "fan", To: "ask"}, {From: "fan", To: "wait"}, {From: "wait", To: "b"},
			{From: "ask", To: "join"}, {From: "b", To: "join"}}, nil)
		if r := f.run(id); r.Status != engine.StatusWaiting || r.WaitReason != "approval" {
			t.Fatalf("with the approval asked and the delay sleeping: %s (%s); want waiting for the approval", r.Status, r.WaitReason)
		}
		f.clk.Advance(61 * time.Minute)
		f.drain()
		r, out := f.runSteps(id)
		if r.Status != engine.StatusWaiting || r.WaitReason != "approval" || out["b"] != `{"b":true}` {
			t.Fatalf("after the delay, no decision yet: %s (%s), b %q; want the other arm done and the run waiting for the approval", r.Status, r.WaitReason, out["b"])
		}
		if _, ran := out["join"]; ran {
			t.Fatal("the join ran before the decision")
		}
		must(t, f.eng.Decide(f.ctx, f.ws.ID, id, "", false, "no"))
		if err := f.eng.Decide(f.ctx, f.ws.ID, id, "", true, "twice"); err == nil || !strings.Contains(err.Error(), "not waiting for an approval") {
			t.Fatalf("a second decision: %v; want refused", err)
		}
		f.drain()
		r, out = f.runSteps(id)
		if r.Status != engine.StatusCompleted || !strings.Contains(out["ask"], `"approved":false`) || !strings.Contains(out["join"], `"count":2`) {
			t.Fatalf("after the decision: %s %+v, ask %s, join %s", r.Status, r.Error, out["ask"], out["join"])
		}
	})
}

// A Call Workflow holds only its arm: the other arm runs while the called
// run is under way (here asleep on a Delay); the caller waits (reason
// workflow) once nothing else can go, and the called run's end sets it
// going to the join.
func TestParallelCallHoldsOnlyItsArm(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		child := f.publishGraph([]workflow.Node{
			node("nap", workflow.NodeDelay, `{"duration": "1h"}`),
			node("answer", workflow.NodeTransform, `{"output": {"n": "{{ $trigger.n * 2 }}"}}`),
		}, []workflow.Edge{{From: "start", To: "nap"}, {From: "nap", To: "answer"}})
		id := f.startGraph([]workflow.Node{
			node("fan", workflow.NodeParallel, `{}`),
			node("sub", workflow.NodeCallWorkflow, `{"workflowId": "`+child+`", "input": {"n": 21}}`),
			node("b", workflow.NodeTransform, `{"output": {"b": true}}`),
			node("join", workflow.NodeMerge, `{}`),
		}, []workflow.Edge{{From: "start", To: "fan"}, {From: "fan", To: "sub"}, {From: "fan", To: "b"}, {From: "sub", To: "join"}, {From: "b", To: "join"}}, nil)
		r, out := f.runSteps(id)
		if r.Status != engine.StatusWaiting || r.WaitReason != "workflow" || out["b"] != `{"b":true}` {
			t.Fatalf("while the called run sleeps: %s (%s), b %q; want the other arm done and the caller waiting for the called run", r.Status, r.WaitReason, out["b"])
		}
		f.clk.Advance(61 * time.Minute)
		f.drain()
		r, out = f.runSteps(id)
		if r.Status != engine.StatusCompleted || !strings.Contains(out["sub"], `"output":{"n":42}`) || !strings.Contains(out["join"], `"count":2`) {
			t.Fatalf("after the called run: %s %+v, sub %s, join %s", r.Status, r.Error, out["sub"], out["join"])
		}
	})
}
