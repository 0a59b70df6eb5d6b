package server_test

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
)

// Testing a step through the JSON API evaluates it against the samples
// sent, runs it and creates no run; unknown steps, other accounts'
// workflows and unconfirmed external effects are refused.
func TestWorkflowsAPITestStep(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		owner := e.signIn("owner@a.example")
		base := "/api/v1/workspaces/acme/workflows"
		doc := `{"name": "Samples", "graph": {"trigger": {"id": "start", "kind": "manual"}, "nodes": [
			{"id": "shape", "kind": "transform", "config": {"output": {"hello": "{{ $trigger.name }}"}}},
			{"id": "bad", "kind": "transform", "config": {"output": "{{ $trigger.( }}"}},
			{"id": "post", "kind": "http", "config": {"method": "POST", "url": "http://127.0.0.1:1/"}}],
			"edges": [{"from": "start", "to": "shape"}, {"from": "shape", "to": "bad"}, {"from": "bad", "to": "post"}]}}`
		d := decodeDetail(t, "create", owner.api("POST", base, doc), 201)
		path := base + "/" + d.Workflow.ID + "/steps/"
		sample := `{"trigger": {"name": "Ada"}}`

		res := owner.api("POST", path+"shape/test", sample)
		wantStatus(t, "test shape", res, 200)
		var got struct {
			Input  json.RawMessage `json:"input"`
			Output map[string]any  `json:"output"`
			Error  *struct{ Code string }
		}
		must(t, json.Unmarshal([]byte(res.Body), &got))
		if got.Error != nil || got.Output["hello"] != "Ada" || string(got.Input) != `{"output":{"hello":"Ada"}}` {
			t.Fatalf("test shape: %s", res.Body)
		}
		res = owner.api("POST", path+"bad/test", sample)
		wantStatus(t, "test bad expression", res, 200)
		got.Error = nil
		must(t, json.Unmarshal([]byte(res.Body), &got))
		if got.Error == nil || got.Error.Code == "INTERNAL" {
			t.Fatalf("expression that does not parse: %s", res.Body)
		}
		wantAPIError(t, "unconfirmed POST", owner.api("POST", path+"post/test", sample), 409, `send "confirm": true`)
		wantStatus(t, "unknown step", owner.api("POST", path+"ghost/test", sample), 404)
		wantStatus(t, "not JSON", owner.api("POST", path+"shape/test", "{"), 400)
		other := e.signIn("owner@b.example")
		wantStatus(t, "other account", other.api("POST", path+"shape/test", sample), 404)

		prev := "/api/v1/workspaces/acme/workflows/" + d.Workflow.ID + "/preview"
		res = owner.api("POST", prev, `{"text": "{{ $steps.shape.data.hello & '!' }}", "steps": {"shape": {"hello": "Ada"}}}`)
		if wantStatus(t, "preview", res, 200); res.Body != `{"value":"Ada!"}`+"\n" && res.Body != `{"value":"Ada!"}` {
			t.Fatalf("preview: %s", res.Body)
		}
		res = owner.api("POST", prev, `{"text": "{{ $trigger.( }}"}`)
		wantStatus(t, "preview syntax error", res, 200)
		var pe struct {
			Error *struct{ Code, Message string }
		}
		if must(t, json.Unmarshal([]byte(res.Body), &pe)); pe.Error == nil || pe.Error.Message == "" {
			t.Fatalf("preview of an expression that does not parse: %s", res.Body)
		}
		wantStatus(t, "preview without text", owner.api("POST", prev, `{}`), 422)
		wantStatus(t, "preview other account", other.api("POST", prev, `{"text": "x"}`), 404)

		// Samples stored: the pasted trigger sample, then each test's output
		// for the next step.
		samples := "/api/v1/workspaces/acme/workflows/" + d.Workflow.ID
		wantStatus(t, "paste without data", owner.api("PUT", samples+"/trigger/sample", `{}`), 422)
		wantStatus(t, "paste other account", other.api("PUT", samples+"/trigger/sample", `{"data": {"name": "Eve"}}`), 404)
		wantStatus(t, "paste trigger sample", owner.api("PUT", samples+"/trigger/sample", `{"data": {"name": "Grace"}}`), 200)
		res = owner.api("POST", path+"shape/test", `{}`)
		wantStatus(t, "test shape on stored sample", res, 200)
		if !strings.Contains(res.Body, `"hello":"Grace"`) {
			t.Fatalf("test on the stored trigger sample: %s", res.Body)
		}
		res = owner.api("GET", samples+"/samples", "")
		wantStatus(t, "samples", res, 200)
		if !strings.Contains(res.Body, `"shape":{"nodeId":"shape","source":"test","data":{"hello":"Grace"}`) {
			t.Fatalf("the test's output is not the step's sample: %s", res.Body)
		}
		res = owner.api("POST", prev, `{"text": "{{ $steps.shape.data.hello }}"}`)
		if wantStatus(t, "preview on stored samples", res, 200); !strings.Contains(res.Body, `"Grace"`) {
			t.Fatalf("preview on stored samples: %s", res.Body)
		}

		// The editor page: "Test step" on each step; the result shows there.
		page := "/acme/workflows/" + d.Workflow.ID
		wantRedirect(t, "page test", owner.post(page+"/edit/steps/shape/test", url.Values{}), page+"/edit#step-shape")
		if ed := owner.get(page + "/edit"); !strings.Contains(ed.Body, `Test step`) || !strings.Contains(ed.Body, `{&#34;hello&#34;:&#34;Grace&#34;}`) {
			t.Fatalf("editor lacks the test's output:\n%.3000s", ed.Body)
		} else if !strings.Contains(ed.Body, `data-insert="{{ $steps.shape.data.hello }}"`) || !strings.Contains(ed.Body, `data-insert="{{ $trigger.name }}"`) {
			t.Fatalf("editor's data picker lacks the samples' values:\n%.5000s", ed.Body)
		}
		wantRedirect(t, "page test POST unconfirmed", owner.post(page+"/edit/steps/post/test", url.Values{}), page+"/edit#step-post")
		if ed := owner.get(page + "/edit"); !strings.Contains(ed.Body, "CONFIRM_REQUIRED") {
			t.Fatalf("editor lacks the confirmation request:\n%.3000s", ed.Body)
		}

		wantRedirect(t, "page sample not JSON", owner.post(page+"/edit/trigger/sample", url.Values{"sample": {"{name"}}), page+"/edit?sample=invalid#trigger")
		if ed := owner.get(page + "/edit?sample=invalid"); !strings.Contains(ed.Body, "The sample is not valid JSON") {
			t.Fatal("editor lacks the refused sample's message")
		}
		wantRedirect(t, "page sample", owner.post(page+"/edit/trigger/sample", url.Values{"sample": {`{"name": "Lin"}`}}), page+"/edit#trigger")
		wantRedirect(t, "page test again", owner.post(page+"/edit/steps/shape/test", url.Values{}), page+"/edit#step-shape")
		if ed := owner.get(page + "/edit"); !strings.Contains(ed.Body, `{&#34;hello&#34;:&#34;Lin&#34;}`) {
			t.Fatalf("test on the pasted sample:\n%.3000s", ed.Body)
		}

		var runs int
		must(t, e.db.Read().QueryRowContext(context.Background(), `SELECT count(*) FROM runs`).Scan(&runs))
		if runs != 0 {
			t.Fatalf("testing steps created %d runs; want none", runs)
		}
	})
}

// A step is tested with the data of one of the workflow's earlier runs
// (its trigger payload and its steps' outputs), in the API and the
// editor; a run of another workflow, or none, is refused with a message.
func TestTestStepWithAnEarlierRun(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		owner := e.signIn("owner@a.example")
		base := "/api/v1/workspaces/acme/workflows"
		graph := `{"trigger": {"id": "start", "kind": "manual"}, "nodes": [
			{"id": "greet", "kind": "transform", "config": {"output": {"hi": "{{ $trigger.name }}"}}},
			{"id": "shout", "kind": "transform", "config": {"output": {"loud": "{{ $uppercase($steps.greet.data.hi) }}"}}}],
			"edges": [{"from": "start", "to": "greet"}, {"from": "greet", "to": "shout"}]}`
		d := decodeDetail(t, "create", owner.api("POST", base, `{"name": "Shouter", "graph": `+graph+`}`), 201)
		other := decodeDetail(t, "create other", owner.api("POST", base, `{"name": "Other", "graph": `+graph+`}`), 201)
		path := base + "/" + d.Workflow.ID
		wantStatus(t, "publish", owner.api("POST", path+"/publish", ""), 200)
		wantStatus(t, "publish other", owner.api("POST", base+"/"+other.Workflow.ID+"/publish", ""), 200)
		runOf := func(wf, payload string) string {
			t.Helper()
			res := owner.api("POST", base+"/"+wf+"/runs", payload)
			wantStatus(t, "run", res, 202)
			var r struct{ RunID string }
			must(t, json.Unmarshal([]byte(res.Body), &r))
			return r.RunID
		}
		mine, theirs := runOf(d.Workflow.ID, `{"name": "Ada"}`), runOf(other.Workflow.ID, `{"name": "Bob"}`)
		e.drain(t)

		// With no sample pasted, the last real event is the trigger's sample.
		res := owner.api("POST", path+"/steps/greet/test", `{}`)
		wantStatus(t, "test on the last event", res, 200)
		if !strings.Contains(res.Body, `"hi":"Ada"`) {
			t.Fatalf("tested without a sample: %s; want the last run's event (Ada)", res.Body)
		}
		if ed := owner.get("/acme/workflows/" + d.Workflow.ID + "/edit"); !strings.Contains(ed.Body, "The last run’s event, until you paste another") || !strings.Contains(ed.Body, `&#34;name&#34;: &#34;Ada&#34;`) {
			t.Fatal("the editor does not show the last event as the trigger's sample")
		}

		res = owner.api("POST", path+"/steps/shout/test", `{"runId": "`+mine+`"}`)
		wantStatus(t, "test with the run", res, 200)
		if !strings.Contains(res.Body, `"loud":"ADA"`) {
			t.Fatalf("tested with the run: %s", res.Body)
		}
		wantAPIError(t, "another workflow's run", owner.api("POST", path+"/steps/shout/test", `{"runId": "`+theirs+`"}`), 422, "not one of this workflow's")
		wantAPIError(t, "no such run", owner.api("POST", path+"/steps/shout/test", `{"runId": "nope"}`), 422, "There is no such run")

		// The editor offers the runs and tests with the one chosen.
		page := owner.get("/acme/workflows/" + d.Workflow.ID + "/edit")
		if !strings.Contains(page.Body, `name="fromRun"`) || !strings.Contains(page.Body, `value="`+mine+`"`) {
			t.Fatal("the editor does not offer the run's data")
		}
		wantRedirect(t, "test in the editor", owner.post("/acme/workflows/"+d.Workflow.ID+"/edit/steps/shout/test", url.Values{"fromRun": {mine}}), "/acme/workflows/"+d.Workflow.ID+"/edit#step-shout")
		if p := owner.get("/acme/workflows/" + d.Workflow.ID + "/edit"); !strings.Contains(p.Body, "ADA") {
			t.Fatal("the editor's test did not use the run's data")
		}
	})
}

// Before any event and with no sample pasted, an app trigger's example
// event (from the catalog) is the trigger's sample: Test step uses it, and
// the editor shows it, saying where it comes from.
func TestTestStepWithTheAppTriggersExample(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		owner := e.signIn("owner@a.example")
		base := "/api/v1/workspaces/acme/workflows"
		d := decodeDetail(t, "create", owner.api("POST", base, `{"name": "From chat", "graph": {
			"trigger": {"id": "chat", "kind": "app", "config": {"app": "sandbox-chat", "trigger": "new-message", "inputs": {"channel": "random"}}},
			"nodes": [{"id": "who", "kind": "transform", "config": {"output": {"said": "{{ $trigger.text }}"}}}],
			"edges": [{"from": "chat", "to": "who"}]}}`), 201)
		res := owner.api("POST", base+"/"+d.Workflow.ID+"/steps/who/test", `{}`)
		wantStatus(t, "test on the example", res, 200)
		if !strings.Contains(res.Body, `"said":"New lead: Ada Lovelace \u003cada@example.com\u003e wants a demo"`) && !strings.Contains(res.Body, `"said":"New lead: Ada Lovelace <ada@example.com> wants a demo"`) {
			t.Fatalf("tested before any event: %s; want the trigger's example", res.Body)
		}
		if ed := owner.get("/acme/workflows/" + d.Workflow.ID + "/edit"); !strings.Contains(ed.Body, "The app trigger’s example event") || !strings.Contains(ed.Body, "M0000000000000001") {
			t.Fatal("the editor does not show the app trigger's example as the sample")
		}
	})
}
