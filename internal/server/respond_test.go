package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// webhookWorkflow creates and publishes a webhook-started workflow from
// its nodes and edges (JSON), and returns its webhook's URL.
func (e *env) webhookWorkflow(t *testing.T, owner *browser, name, nodes, edges string) string {
	t.Helper()
	base := "/api/v1/workspaces/acme/workflows"
	d := decodeDetail(t, "create "+name, owner.api("POST", base, `{"name": "`+name+`", "graph": {"trigger": {"id": "start", "kind": "webhook", "config": {"auth": "none"}},
		"nodes": `+nodes+`, "edges": `+edges+`}}`), 201)
	res := owner.api("POST", base+"/"+d.Workflow.ID+"/publish", "")
	wantStatus(t, "publish "+name, res, 200)
	page := owner.get("/acme/workflows/" + d.Workflow.ID)
	path := regexp.MustCompile(`/webhooks/[0-9a-f-]{36}`).FindString(page.Body)
	if path == "" {
		t.Fatalf("%s: no webhook URL on its page", name)
	}
	return e.srv.URL + path
}

func postHook(t *testing.T, url, body string) (*http.Response, string, time.Duration) {
	t.Helper()
	start := time.Now()
	res, err := http.Post(url, "application/json", strings.NewReader(body))
	must(t, err)
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b), time.Since(start)
}

// Respond to Webhook: the workflow decides the delivery's answer (status,
// headers, body from expressions) and goes on after it; a run that parks
// before answering, or answers later than its wait, gives the caller 202
// with the run's id; a Respond step without a webhook trigger, a status
// that is not one, or a header it may not set are refused at publish.
func TestRespondToWebhook(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		e.runWorkers()
		owner := e.signIn("owner@a.example")
		url := e.webhookWorkflow(t, owner, "Lookup",
			`[{"id": "find", "kind": "transform", "config": {"output": {"greeting": "Hello {{ $trigger.body.name }}"}}},
			  {"id": "answer", "kind": "respond-webhook", "config": {"status": "201", "headers": {"X-Request-Id": "{{ $trigger.body.id }}"},
			    "body": {"greeting": "{{ $steps.find.data.greeting }}", "found": true}}},
			  {"id": "after", "kind": "transform", "config": {"output": {"done": true}}}]`,
			`[{"from": "start", "to": "find"}, {"from": "find", "to": "answer"}, {"from": "answer", "to": "after"}]`)
		res, body, _ := postHook(t, url, `{"id": "r-17", "name": "Ada"}`)
		if res.StatusCode != 201 || res.Header.Get("X-Request-Id") != "r-17" || res.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("answer: %d %v %s", res.StatusCode, res.Header, body)
		}
		var got map[string]any
		must(t, json.Unmarshal([]byte(body), &got))
		if got["greeting"] != "Hello Ada" || got["found"] != true {
			t.Fatalf("answer body: %s", body)
		}
		runID := res.Header.Get("TaskJuice-Run-Id")
		eventually(t, "the run goes on after answering", 20*time.Second, func() bool {
			r := owner.api("GET", "/api/v1/workspaces/acme/runs/"+runID, "")
			return strings.Contains(r.Body, `"status":"completed"`)
		})

		// Text answers and a parked run.
		text := e.webhookWorkflow(t, owner, "Later",
			`[{"id": "wait", "kind": "delay", "config": {"duration": "1h"}}, {"id": "answer", "kind": "respond-webhook", "config": {"body": "too late"}}]`,
			`[{"from": "start", "to": "wait"}, {"from": "wait", "to": "answer"}]`)
		res, body, took := postHook(t, text, `{}`)
		if res.StatusCode != 202 || !strings.Contains(body, `"runId"`) {
			t.Fatalf("a run that parks before answering: %d %s", res.StatusCode, body)
		}
		if took > 9*time.Second {
			t.Fatalf("the caller was held %s for a run that parked", took)
		}
		plain := e.webhookWorkflow(t, owner, "Plain",
			`[{"id": "answer", "kind": "respond-webhook", "config": {"status": "{{ $trigger.body.code }}", "body": "ok {{ $trigger.body.code }}"}}]`,
			`[{"from": "start", "to": "answer"}]`)
		res, body, _ = postHook(t, plain, `{"code": 409}`)
		if res.StatusCode != 409 || body != "ok 409" || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain") {
			t.Fatalf("text answer: %d %q %q", res.StatusCode, body, res.Header.Get("Content-Type"))
		}

		// Slower than its wait: 202 after the wait.
		slow := e.webhookWorkflow(t, owner, "Slow",
			`[{"id": "busy", "kind": "code", "config": {"source": "const t = Date.now(); while (Date.now() - t < 2500) {} return 1", "timeoutMs": 5000}},
			  {"id": "answer", "kind": "respond-webhook", "config": {"waitSeconds": 1}}]`,
			`[{"from": "start", "to": "busy"}, {"from": "busy", "to": "answer"}]`)
		res, body, took = postHook(t, slow, `{}`)
		if res.StatusCode != 202 || took < time.Second {
			t.Fatalf("slower than the wait: %d after %s: %s", res.StatusCode, took, body)
		}

		base := "/api/v1/workspaces/acme/workflows"
		for _, bad := range []struct{ trigger, config, message string }{
			{`{"id": "start", "kind": "manual"}`, `{}`, "give the workflow a Webhook trigger"},
			{`{"id": "start", "kind": "webhook", "config": {"auth": "none"}}`, `{"status": "700"}`, "from 200 to 599"},
			{`{"id": "start", "kind": "webhook", "config": {"auth": "none"}}`, `{"headers": {"Set-Cookie": "a=b"}}`, `The header \"Set-Cookie\" cannot be set here`},
			{`{"id": "start", "kind": "webhook", "config": {"auth": "none"}}`, `{"waitSeconds": 90}`, "at most 30 seconds"},
		} {
			d := decodeDetail(t, "create", owner.api("POST", base, `{"name": "Bad", "graph": {"trigger": `+bad.trigger+`,
				"nodes": [{"id": "answer", "kind": "respond-webhook", "config": `+bad.config+`}], "edges": [{"from": "start", "to": "answer"}]}}`), 201)
			res := owner.api("POST", base+"/"+d.Workflow.ID+"/publish", "")
			if res.StatusCode != 422 || !strings.Contains(res.Body, bad.message) {
				t.Errorf("publish %s: %d %s", bad.config, res.StatusCode, res.Body)
			}
		}
	})
}
