package server_test

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"taskjuice/internal/connection"
)

func TestAPIKeyConnectionNeverShowsItsSecret(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		const key = "sk_test_SECRETVALUE123"
		owner := e.signIn("owner@a.example")
		res := owner.api("POST", "/api/v1/workspaces/acme/connections", `{"app":"stripe","label":"Stripe live","fields":{"apiKey":"`+key+`"}}`)
		wantStatus(t, "create stripe connection", res, 201)
		var c connection.Connection
		must(t, json.Unmarshal([]byte(res.Body), &c))
		if c.Status != connection.StatusActive || c.StatusDescription != "Connected and working." {
			t.Fatalf("new connection: %+v", c)
		}
		bodies := []string{res.Body}
		for _, p := range []string{"/acme/connections", "/acme/connections/" + c.ID, "/acme/connections?status=active"} {
			r := owner.get(p)
			wantStatus(t, p, r, 200)
			bodies = append(bodies, r.Body)
		}
		for _, p := range []string{"/api/v1/workspaces/acme/connections", "/api/v1/connections/" + c.ID, "/api/v1/connections/" + c.ID + "/history"} {
			r := owner.api("GET", p, "")
			wantStatus(t, p, r, 200)
			bodies = append(bodies, r.Body)
		}
		for i, b := range bodies {
			if strings.Contains(b, key) {
				t.Fatalf("response %d shows the API key", i)
			}
		}
		if strings.Contains(e.log.String(), key) {
			t.Fatal("the API key is in the log")
		}
		if !strings.Contains(bodies[1], "Stripe live") || !strings.Contains(bodies[1], "Connected and working.") {
			t.Fatal("connections page lacks the connection or its status description")
		}

		// Another account cannot see or act on it.
		ownerB := e.signIn("owner@b.example")
		for _, p := range []string{"/api/v1/connections/" + c.ID, "/api/v1/connections/" + c.ID + "/history"} {
			wantStatus(t, "account B "+p, ownerB.api("GET", p, ""), 404)
		}
		wantStatus(t, "account B refresh", ownerB.api("POST", "/api/v1/connections/"+c.ID+"/refresh", ""), 404)
		wantStatus(t, "account B revoke", ownerB.api("POST", "/api/v1/connections/"+c.ID+"/revoke", ""), 404)
		wantStatus(t, "account B page", ownerB.get("/acme/connections/"+c.ID), 404)

		// Bad input.
		for _, tc := range []struct{ body, code string }{
			{`{"app":"nope"}`, "invalid"},
			{`{"app":"stripe","fields":{}}`, "invalid"},
			{`{"app":"stripe","fields":{"apiKey":"k","colour":"red"}}`, "invalid"},
			{`{"app":"sandbox-chat"}`, "invalid"},
		} {
			r := owner.api("POST", "/api/v1/workspaces/acme/connections", tc.body)
			wantStatus(t, tc.body, r, 422)
			if code, _ := apiError(t, r); code != tc.code {
				t.Errorf("%s: code %q, want %q", tc.body, code, tc.code)
			}
		}
		wantStatus(t, "bad status filter", owner.api("GET", "/api/v1/workspaces/acme/connections?status=broken", ""), 422)
	})
}

func TestRefreshOfBrokenConnectionIs400(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		owner := e.signIn("owner@a.example")
		res := owner.api("POST", "/api/v1/workspaces/acme/connections", `{"app":"stripe","fields":{"apiKey":"sk_test_1"}}`)
		wantStatus(t, "create", res, 201)
		var c connection.Connection
		must(t, json.Unmarshal([]byte(res.Body), &c))
		conns := e.connections
		if _, err := conns.Transition(context.Background(), c.ID, connection.StatusError, "test", connection.System, nil); err != nil {
			t.Fatal(err)
		}
		r := owner.api("POST", "/api/v1/connections/"+c.ID+"/refresh", "")
		wantStatus(t, "refresh of an error connection", r, 400)
		if _, msg := apiError(t, r); msg != "Connection cannot be refreshed. Please reconnect your connection." {
			t.Fatalf("message: got %q", msg)
		}
		page := wantSentBack(t, owner, "refresh button on an error connection", owner.post("/acme/connections/"+c.ID+"/refresh", url.Values{}), "/acme/connections/"+c.ID,
			"Connection cannot be refreshed. Please reconnect your connection.")
		if !strings.Contains(page.Body, "Connection cannot be refreshed. Please reconnect your connection.") || !strings.Contains(page.Body, "Reconnection needed.") {
			t.Fatal("connection page does not show the refresh refusal and the status")
		}
		wantStatus(t, "revoke", owner.api("POST", "/api/v1/connections/"+c.ID+"/revoke", ""), 200)
		wantStatus(t, "revoke again", owner.api("POST", "/api/v1/connections/"+c.ID+"/revoke", ""), 409)
	})
}

// TestActionAddressesLeadBackToTheirPage: an action's address loaded with
// GET (a reload, a bookmark, a reopened tab) leads to the page the action
// belongs to instead of a dead end.
func TestActionAddressesLeadBackToTheirPage(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		owner := e.signIn("owner@a.example")
		c, err := e.connections.Create(context.Background(), e.acme, connection.New{AppKey: "stripe", Label: "Billing", Status: connection.StatusActive, OwnerKind: connection.OwnerWorkspace}, connection.System)
		must(t, err)
		for path, want := range map[string]string{
			"/acme/connections/" + c.ID + "/refresh":        "/acme/connections/" + c.ID,
			"/acme/connections/" + c.ID + "/revoke":         "/acme/connections/" + c.ID,
			"/acme/monitoring/workflow-runs/w1/r1/resume":   "/acme/monitoring/workflow-runs/w1/r1",
			"/acme/workspace/members/invitations/i1/resend": "/acme/workspace/members",
			"/acme/clients/requests/send":                   "/acme/clients/requests",
			"/settings/api-tokens/t1/revoke":                "/settings/api-tokens",
			"/acme/notifications/read":                      "/acme/notifications",
			"/acme/workflows/w1/edit/steps/s1/move":         "/acme/workflows/w1/edit",
		} {
			wantRedirect(t, "GET "+path, owner.get(path), want)
		}
		wantStatus(t, "an address nothing serves", owner.get("/acme/nothing/here"), 404)
	})
}
