package server_test

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"taskjuice/internal/connection"
)

// TestBellAndBanner: broken connections raise the bell and the red banner
// at the top of the runs area; a reconnect takes one away.
func TestBellAndBanner(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		owner := e.signIn("owner@a.example")
		var ids []string
		for _, app := range []string{"stripe", "freshdesk"} {
			body := `{"app":"stripe","label":"Stripe","fields":{"apiKey":"sk_test_1"}}`
			if app == "freshdesk" {
				body = `{"app":"freshdesk","label":"Helpdesk","fields":{"apiKey":"k1","subdomain":"acme"}}`
			}
			res := owner.api("POST", "/api/v1/workspaces/acme/connections", body)
			wantStatus(t, "create "+app, res, 201)
			var c connection.Connection
			must(t, json.Unmarshal([]byte(res.Body), &c))
			ids = append(ids, c.ID)
		}
		runs := owner.get("/acme/monitoring/workflow-runs")
		if strings.Contains(runs.Body, `class="banner"`) || strings.Contains(runs.Body, "bell-count") {
			t.Fatal("banner or unread count with nothing broken")
		}
		for _, id := range ids {
			_, err := e.connections.Transition(ctx, id, connection.StatusError, "rejected", connection.System, nil)
			must(t, err)
		}
		_, err := e.notify.Consume(ctx)
		must(t, err)
		runs = owner.get("/acme/monitoring/workflow-runs")
		for _, want := range []string{"2 connections need to be reauthorized", "Stripe reauth required", "and 1 more", `<span class="bell-count">2</span>`} {
			if !strings.Contains(runs.Body, want) {
				t.Errorf("runs page lacks %q", want)
			}
		}
		if !strings.Contains(owner.get("/acme/").Body, "2 connections need to be reauthorized") {
			t.Error("workspace overview lacks the banner")
		}
		if strings.Contains(owner.get("/beta/monitoring/workflow-runs").Body, "reauthorized") {
			t.Error("another workspace shows the banner")
		}
		// One reconnected: the banner counts one fewer.
		_, err = e.connections.Transition(ctx, ids[0], connection.StatusActive, "reconnected", connection.System, nil)
		must(t, err)
		_, err = e.notify.Consume(ctx)
		must(t, err)
		runs = owner.get("/acme/monitoring/workflow-runs")
		if !strings.Contains(runs.Body, "A connection needs to be reauthorized") || !strings.Contains(runs.Body, "Freshdesk reauth required") {
			t.Fatal("banner after one reconnect")
		}
		list := owner.get("/acme/notifications")
		wantStatus(t, "notifications", list, 200)
		if !strings.Contains(list.Body, "Freshdesk reauth required") || !strings.Contains(list.Body, "Resolved") {
			t.Fatal("notifications page")
		}
		wantRedirect(t, "mark all read", owner.post("/acme/notifications/read", url.Values{}), "/acme/notifications")
		if strings.Contains(owner.get("/acme/monitoring/workflow-runs").Body, `class="banner"`) {
			t.Fatal("banner after mark all read")
		}
		// Another person still sees it.
		if !strings.Contains(e.signIn("admin@a.example").get("/acme/monitoring/workflow-runs").Body, "A connection needs to be reauthorized") {
			t.Fatal("marking read hid the banner for everyone")
		}
	})
}
