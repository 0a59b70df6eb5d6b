package workflow_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"taskjuice/internal/catalog"
	"taskjuice/internal/workflow"
)

func testCatalog(t testing.TB) *catalog.Catalog {
	t.Helper()
	cat, err := catalog.Load(catalog.Options{Getenv: func(string) string { return "" }, SandboxURL: "http://127.0.0.1:1/sandbox"})
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

// checks knows three connections: an active and a broken Sandbox Chat, and
// an active Stripe.
func checks(t testing.TB) workflow.Checks {
	conns := map[string][2]string{
		"good":   {"sandbox-chat", "active"},
		"broken": {"sandbox-chat", "error"},
		"stripe": {"stripe", "active"},
	}
	return workflow.Checks{
		Apps: testCatalog(t),
		Expressions: func(raw json.RawMessage) error {
			if strings.Contains(string(raw), "{{ (") {
				return errors.New("text: the expression does not compile")
			}
			return nil
		},
		Connection: func(id string) (string, string, bool) {
			c, ok := conns[id]
			return c[0], c[1], ok
		},
		Cron: func(expr, tz string) error {
			if expr == "never" {
				return errors.New("not a cron expression")
			}
			return nil
		},
		Workflow: func(id string) bool { return id == "published" },
	}
}

// base is a valid graph: webhook → post a message through a good
// connection.
const base = `{
  "schema": 1,
  "trigger": {"id": "start", "kind": "webhook", "config": {"auth": "bearer"}},
  "nodes": [
    {"id": "post", "kind": "action", "config": {"app": "sandbox-chat", "action": "post-message",
      "inputs": {"channel": "general", "text": "Hello {{ $trigger.name }}"}}, "connection": {"id": "good"}}
  ],
  "edges": [{"from": "start", "to": "post"}]
}`

func mustGraph(t *testing.T, doc string) workflow.Graph {
	t.Helper()
	g, err := workflow.ParseGraph([]byte(doc))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return g
}

// edit changes the base graph through its JSON form.
func edit(t *testing.T, fn func(m map[string]any)) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(base), &m); err != nil {
		t.Fatal(err)
	}
	fn(m)
	b, _ := json.Marshal(m)
	return string(b)
}

// appTrigger is a Sandbox Chat "New message in channel" trigger node read
// through the named connection.
func appTrigger(conn string, inputs map[string]any) map[string]any {
	return map[string]any{"id": "start", "kind": "app",
		"config":     map[string]any{"app": "sandbox-chat", "trigger": "new-message", "inputs": inputs},
		"connection": map[string]any{"id": conn}}
}

func nodes(m map[string]any) []any { return m["nodes"].([]any) }
func node(m map[string]any, i int) map[string]any {
	return nodes(m)[i].(map[string]any)
}

func TestPublishGate(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []string // problems, as "node.field: message"
	}{
		{"valid", base, nil},
		{"inactive action connection", edit(t, func(m map[string]any) {
			node(m, 0)["connection"] = map[string]any{"id": "broken"}
		}), []string{"post.connection: Action node has an inactive connection"}},
		{"inactive trigger connection", edit(t, func(m map[string]any) {
			m["trigger"].(map[string]any)["connection"] = map[string]any{"id": "broken"}
		}), []string{"start.connection: Trigger node has an inactive connection"}},
		{"app trigger on a broken connection", edit(t, func(m map[string]any) {
			m["trigger"] = appTrigger("broken", map[string]any{"channel": "general"})
		}), []string{"start.connection: Trigger node has an inactive connection"}},
		{"app trigger", edit(t, func(m map[string]any) {
			m["trigger"] = appTrigger("good", map[string]any{"channel": "general"})
		}), nil},
		{"app trigger: connection of another app", edit(t, func(m map[string]any) {
			m["trigger"] = appTrigger("stripe", map[string]any{"channel": "general"})
		}), []string{"start.connection: The chosen connection is for another app"}},
		{"app trigger: missing input, unknown input, no connection", edit(t, func(m map[string]any) {
			tr := appTrigger("", map[string]any{"colour": "red"})
			delete(tr, "connection")
			m["trigger"] = tr
		}), []string{
			"start.connection: Choose the connection this trigger reads the app through",
			"start.inputs.channel: Channel is required",
			`start.inputs.colour: Sandbox Chat's New message in channel trigger has no input "colour"`,
		}},
		{"app trigger: unknown trigger", edit(t, func(m map[string]any) {
			tr := appTrigger("good", nil)
			tr["config"].(map[string]any)["trigger"] = "new-reaction"
			m["trigger"] = tr
		}), []string{"start.trigger: Choose one of Sandbox Chat's triggers"}},
		{"app trigger: unknown app", edit(t, func(m map[string]any) {
			tr := appTrigger("good", nil)
			tr["config"].(map[string]any)["app"] = "nowhere"
			m["trigger"] = tr
		}), []string{"start.connection: The chosen connection is for another app", `start.app: Unknown app "nowhere"`}},
		{"app trigger: client provides it (not yet connected)", edit(t, func(m map[string]any) {
			tr := appTrigger("", map[string]any{"channel": "general"})
			tr["connection"] = map[string]any{"clientProvides": true}
			m["trigger"] = tr
		}), []string{"start.connection: " + workflow.MsgTriggerInactiveConnection}},
		{"client provides (not yet connected)", edit(t, func(m map[string]any) {
			node(m, 0)["connection"] = map[string]any{"clientProvides": true}
		}), []string{"post.connection: Action node has an inactive connection"}},
		{"client cannot provide an API-key app", edit(t, func(m map[string]any) {
			node(m, 0)["config"] = map[string]any{"app": "stripe", "action": "create-customer", "inputs": map[string]any{"email": "a@b.c"}}
			node(m, 0)["connection"] = map[string]any{"clientProvides": true}
		}), []string{
			"post.connection: Clients can provide only apps they sign in to (OAuth); Stripe uses an API key",
			"post.connection: Action node has an inactive connection",
		}},
		{"unknown connection", edit(t, func(m map[string]any) {
			node(m, 0)["connection"] = map[string]any{"id": "other-workspace"}
		}), []string{"post.connection: The chosen connection does not exist in this workspace"}},
		{"connection of another app", edit(t, func(m map[string]any) {
			node(m, 0)["connection"] = map[string]any{"id": "stripe"}
		}), []string{"post.connection: The chosen connection is for another app"}},
		{"no connection", edit(t, func(m map[string]any) { delete(node(m, 0), "connection") }),
			[]string{"post.connection: Choose the connection this step uses, or let the client provide it"}},
		{"missing trigger", edit(t, func(m map[string]any) { delete(m, "trigger"); m["edges"] = []any{} }),
			[]string{"The workflow needs a trigger"}},
		{"two triggers", edit(t, func(m map[string]any) {
			m["nodes"] = append(nodes(m), map[string]any{"id": "again", "kind": "manual"})
			m["edges"] = append(m["edges"].([]any), map[string]any{"from": "post", "to": "again"})
		}), []string{`again: A workflow has exactly one trigger; "again" is a second one`}},
		{"unreachable", edit(t, func(m map[string]any) {
			m["nodes"] = append(nodes(m), map[string]any{"id": "lost", "kind": "delay", "config": map[string]any{"duration": "1m"}})
		}), []string{"lost: This step cannot be reached from the trigger"}},
		{"cycle", edit(t, func(m map[string]any) {
			m["nodes"] = append(nodes(m), map[string]any{"id": "wait", "kind": "delay", "config": map[string]any{"duration": "1m"}})
			m["edges"] = append(m["edges"].([]any), map[string]any{"from": "post", "to": "wait"}, map[string]any{"from": "wait", "to": "post"})
		}), []string{`wait: This step leads back to "post": workflows cannot go in circles; use a Loop`}},
		{"expression does not compile", edit(t, func(m map[string]any) {
			node(m, 0)["config"].(map[string]any)["inputs"].(map[string]any)["text"] = "{{ ( }}"
		}), []string{"post.config: text: the expression does not compile"}},
		{"missing required input", edit(t, func(m map[string]any) {
			delete(node(m, 0)["config"].(map[string]any)["inputs"].(map[string]any), "text")
		}), []string{"post.inputs.text: Message is required"}},
		{"unknown config field", edit(t, func(m map[string]any) {
			node(m, 0)["config"].(map[string]any)["colour"] = "red"
		}), []string{`post.config: The settings of this App action are not valid: unknown field "colour"`}},
		{"bad webhook auth", edit(t, func(m map[string]any) {
			m["trigger"].(map[string]any)["config"] = map[string]any{"auth": "hmac-sha256"}
		}), []string{"start.header: Name the header that carries the secret or signature"}},
		{"signed timestamp without HMAC", edit(t, func(m map[string]any) {
			m["trigger"].(map[string]any)["config"] = map[string]any{"auth": "bearer", "timestamp": "stripe"}
		}), []string{"start.timestamp: A signed timestamp needs an HMAC mode (hmac-sha256 or hmac-sha512)"}},
		{"timestamp header unnamed", edit(t, func(m map[string]any) {
			m["trigger"].(map[string]any)["config"] = map[string]any{"auth": "hmac-sha256", "header": "X-Sig", "timestamp": "header"}
		}), []string{"start.timestampHeader: Name the header that carries the signed timestamp (Unix seconds)"}},
		{"unknown timestamp scheme and bad delivery header", edit(t, func(m map[string]any) {
			m["trigger"].(map[string]any)["config"] = map[string]any{"auth": "hmac-sha256", "header": "X-Sig", "timestamp": "github", "deliveryHeader": "X Delivery"}
		}), []string{"start.timestamp: Choose how the caller signs a timestamp: stripe, slack, header, or none",
			"start.deliveryHeader: A header name has letters, digits and dashes only, e.g. X-GitHub-Delivery"}},
		{"branch needs its true path", edit(t, func(m map[string]any) {
			m["nodes"] = append(nodes(m), map[string]any{"id": "check", "kind": "branch", "config": map[string]any{"condition": "{{ true }}"}})
			m["edges"] = append(m["edges"].([]any), map[string]any{"from": "post", "to": "check"})
		}), []string{`check: Connect the "true" path of this Branch`}},
		{"unlabelled edge from a branch", edit(t, func(m map[string]any) {
			m["nodes"] = append(nodes(m),
				map[string]any{"id": "check", "kind": "branch", "config": map[string]any{"condition": "{{ true }}"}},
				map[string]any{"id": "wait", "kind": "delay", "config": map[string]any{"duration": "1m"}})
			m["edges"] = append(m["edges"].([]any), map[string]any{"from": "post", "to": "check"},
				map[string]any{"from": "check", "to": "wait"})
		}), []string{
			`check: Say which path of this Branch leads to "wait"`,
			`check: Connect the "true" path of this Branch`,
			"wait: This step cannot be reached from the trigger",
		}},
		{"schedule with a bad cron", edit(t, func(m map[string]any) {
			m["trigger"] = map[string]any{"id": "start", "kind": "schedule", "config": map[string]any{"cron": "never"}}
		}), []string{"start.cron: not a cron expression"}},
		{"call an unpublished workflow", edit(t, func(m map[string]any) {
			m["nodes"] = append(nodes(m), map[string]any{"id": "sub", "kind": "call-workflow", "config": map[string]any{"workflowId": "draft"}})
			m["edges"] = append(m["edges"].([]any), map[string]any{"from": "post", "to": "sub"})
		}), []string{"sub.workflowId: The called workflow must be a published workflow of this workspace"}},
		{"loops nest", edit(t, func(m map[string]any) {
			m["nodes"] = append(nodes(m),
				map[string]any{"id": "outer", "kind": "loop", "config": map[string]any{"items": "{{ $trigger.rows }}"}},
				map[string]any{"id": "inner", "kind": "loop", "config": map[string]any{"items": "{{ $meta.loop.item }}"}},
				map[string]any{"id": "cell", "kind": "transform", "config": map[string]any{"output": 1}})
			m["edges"] = append(m["edges"].([]any), map[string]any{"from": "post", "to": "outer"},
				map[string]any{"from": "outer", "to": "inner", "when": "each"}, map[string]any{"from": "inner", "to": "cell", "when": "each"})
		}), nil},
		{"delay too long", edit(t, func(m map[string]any) {
			m["nodes"] = append(nodes(m), map[string]any{"id": "wait", "kind": "delay", "config": map[string]any{"duration": "800h"}})
			m["edges"] = append(m["edges"].([]any), map[string]any{"from": "post", "to": "wait"})
		}), []string{"wait.duration: Enter a duration such as 90s, 15m or 48h, at most 30 days"}},
	}
	c := checks(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, p := range workflow.Validate(mustGraph(t, tt.doc), c) {
				got = append(got, p.String())
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Fatalf("problems:\n got  %q\n want %q", got, tt.want)
			}
		})
	}
}

func TestParseGraphRejectsUnknownFields(t *testing.T) {
	if _, err := workflow.ParseGraph([]byte(`{"schema":1,"trigger":{"id":"t","kind":"manual"},"nodez":[]}`)); err == nil {
		t.Fatal("unknown top-level field: got nil error")
	}
	if _, err := workflow.ParseGraph([]byte(`{"schema":1} {}`)); err == nil {
		t.Fatal("two documents: got nil error")
	}
}

// An HTTP step bound to a connection may name only the hosts the check
// allows: a static host is refused at publish on its URL field; a host
// known only at run time is left to the run-time check.
func TestPublishGateConnectionHost(t *testing.T) {
	c := checks(t)
	var asked []string
	c.ConnectionHost = func(id, raw string) error {
		asked = append(asked, id+" "+raw)
		if raw != "https://api.stripe.com" {
			return errors.New("This connection's credential may not be sent to " + strings.TrimPrefix(raw, "https://") + "; allowed hosts: api.stripe.com")
		}
		return nil
	}
	doc := func(url string) string {
		return edit(t, func(m map[string]any) {
			node(m, 0)["kind"] = "http"
			node(m, 0)["config"] = map[string]any{"method": "GET", "url": url}
			node(m, 0)["connection"] = map[string]any{"id": "stripe"}
		})
	}
	for url, want := range map[string]string{
		"https://evil.example/steal?k=1":           "post.url: This connection's credential may not be sent to evil.example; allowed hosts: api.stripe.com",
		"https://evil.example/{{ $trigger.path }}": "post.url: This connection's credential may not be sent to evil.example; allowed hosts: api.stripe.com",
		"https://api.stripe.com/v1/customers":      "",
		"{{ $trigger.url }}":                       "",
		"https://{{ $trigger.host }}/v1":           "",
	} {
		var got []string
		for _, p := range workflow.Validate(mustGraph(t, doc(url)), c) {
			got = append(got, p.String())
		}
		if strings.Join(got, "\n") != want {
			t.Errorf("%s: got %q, want %q", url, got, want)
		}
	}
	if len(asked) != 3 || asked[0] == "" || !strings.HasPrefix(asked[0], "stripe ") {
		t.Errorf("checks asked: got %q, want three, for the stripe connection", asked)
	}
}
