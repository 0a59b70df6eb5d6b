package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"taskjuice/internal/connection"
	"taskjuice/internal/llm"
	"taskjuice/internal/mail"
	"taskjuice/internal/mail/mailtest"
	"taskjuice/internal/spend"
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

// TestAlertEmails: a connection that breaks is emailed over SMTP to the
// account's owner and admins — once, with a link and no credential; an
// account that turned alert emails off gets none.
func TestAlertEmails(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		smtpd := mailtest.Start(t)
		sender, err := mail.NewSMTP(smtpd.Config())
		must(t, err)
		outbox := mail.NewOutbox(e.db, sender, nil)
		e.notify.EmailAlerts(e.srv.URL)

		owner := e.signIn("owner@a.example")
		id := connectionFromLocation(t, owner.consent(t, "/acme/connections/new", url.Values{"app": {"sandbox-chat"}}, "Acme Chat"))
		breakIt := func() {
			t.Helper()
			_, err := e.sandbox.RevokeAccount("Acme Chat")
			must(t, err)
			wantStatus(t, "refresh a revoked grant", owner.api("POST", "/api/v1/connections/"+id+"/refresh", ""), 400)
			_, err = e.notify.Consume(ctx)
			must(t, err)
			_, err = outbox.Deliver(ctx)
			must(t, err)
		}
		breakIt()
		got := smtpd.Wait(2, 5*time.Second)
		if len(got) != 2 {
			t.Fatalf("alert emails: %d, want 2 (owner and admin)", len(got))
		}
		var to []string
		for _, m := range got {
			to = append(to, m.To...)
			e.seenMu.Lock()
			e.seen = append(e.seen, m.Raw)
			e.seenMu.Unlock()
			if m.Subject != "Sandbox Chat reauth required (Acme Corp)" {
				t.Errorf("subject %q", m.Subject)
			}
			for _, want := range []string{"needs to be reconnected", e.srv.URL + "/acme/connections/" + id, "/settings/general"} {
				if !strings.Contains(m.Text, want) {
					t.Errorf("email lacks %q:\n%s", want, m.Text)
				}
			}
		}
		sort.Strings(to)
		if strings.Join(to, ",") != "admin@a.example,owner@a.example" {
			t.Fatalf("recipients %v, want the owner and the admin (not the member or the client)", to)
		}
		if n, _ := e.notify.Consume(ctx); n != 0 {
			t.Fatal("the break was handled twice")
		}
		if n, _ := outbox.Deliver(ctx); n != 0 {
			t.Fatal("an alert was emailed twice")
		}

		// Reconnected, then turned off and broken again: the bell rings, no email.
		connectionFromLocation(t, owner.consent(t, "/acme/connections/"+id+"/reconnect", url.Values{}, "Acme Chat"))
		_, err = e.notify.Consume(ctx)
		must(t, err)
		wantStatus(t, "member turns emails off", e.signIn("member@a.example").api("PATCH", "/api/v1/account", `{"alertEmails":false}`), 403)
		res := owner.api("PATCH", "/api/v1/account", `{"alertEmails":false}`)
		wantStatus(t, "turn alert emails off", res, 200)
		if !strings.Contains(res.Body, `"alertEmails":false`) {
			t.Fatalf("account after turning emails off: %s", res.Body)
		}
		breakIt()
		if !strings.Contains(owner.get("/acme/monitoring/workflow-runs").Body, "Sandbox Chat reauth required") {
			t.Fatal("no banner after the second break")
		}
		if got := smtpd.Messages(); len(got) != 2 {
			t.Fatalf("emails after turning them off: %d, want still 2", len(got))
		}
	})
}

// TestSpendAlertEmail: spend reaching 95% of the cap is emailed over SMTP
// to the owner and admins, once; 50% and 80% ring the bell only.
func TestSpendAlertEmail(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		smtpd := mailtest.Start(t)
		sender, err := mail.NewSMTP(smtpd.Config())
		must(t, err)
		outbox := mail.NewOutbox(e.db, sender, nil)
		e.notify.EmailAlerts(e.srv.URL)
		money := func(s string) llm.Money {
			m, err := llm.ParseMoney(s)
			must(t, err)
			return m
		}
		must(t, e.spend.SetCap(ctx, e.acme.ID, money("10.00")))
		for i, c := range []string{"5.00", "3.00", "1.60", "0.10"} {
			res, err := e.spend.Reserve(ctx, e.acme.ID, fmt.Sprintf("call-%d", i), money(c), spend.Call{Model: "sandbox-small"})
			must(t, err)
			must(t, e.spend.Settle(ctx, res, money(c), llm.Usage{PromptTokens: 1, CompletionTokens: 1}))
			_, err = outbox.Deliver(ctx)
			must(t, err)
		}
		got := smtpd.Wait(2, 5*time.Second)
		if len(got) != 2 {
			t.Fatalf("spend alert emails: %d, want 2 (owner and admin, at 95%%)", len(got))
		}
		for _, m := range got {
			if m.Subject != "Spend at 95% of the cap (Acme Corp)" || !strings.Contains(m.Text, e.srv.URL+"/acme/analytics/costs") {
				t.Errorf("spend alert email: %q\n%s", m.Subject, m.Text)
			}
		}
		if n, _ := outbox.Deliver(ctx); n != 0 || len(smtpd.Messages()) != 2 {
			t.Fatal("the spend alert was emailed more than once")
		}
	})
}
