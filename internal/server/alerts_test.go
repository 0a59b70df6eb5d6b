package server_test

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"taskjuice/internal/mail"
	"taskjuice/internal/mail/mailtest"
	"taskjuice/internal/notify"
	"taskjuice/internal/workflow"
)

// alertReceiver is a local endpoint for outgoing alert webhooks that checks
// each signature with the secret it is given.
type alertReceiver struct {
	mu     sync.Mutex
	secret string
	events []string
	bad    int
	seen   []string // bodies, to look for secrets in
}

func (a *alertReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	a.mu.Lock()
	defer a.mu.Unlock()
	ts := r.Header.Get(notify.TimestampHeader)
	want := notify.Sign([]byte(a.secret), ts, body)
	if a.secret == "" || !hmac.Equal([]byte(want), []byte(r.Header.Get(notify.SignatureHeader))) || r.Header.Get(notify.DeliveryHeader) == "" {
		a.bad++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var p struct{ Event string }
	_ = json.Unmarshal(body, &p)
	a.events = append(a.events, p.Event)
	a.seen = append(a.seen, string(body)+r.Header.Get(notify.SignatureHeader))
}

func (a *alertReceiver) got() ([]string, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.events...), a.bad
}

// TestFailureAlertsOneIncidentPerDestination: ten failures in a row of a
// workflow send exactly one incident to each destination (the bell, email
// over SMTP, the sandbox chat channel, a signed webhook), and its success
// afterwards one recovery.
func TestFailureAlertsOneIncidentPerDestination(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		smtpd := mailtest.Start(t)
		sender, err := mail.NewSMTP(smtpd.Config())
		must(t, err)
		outbox := mail.NewOutbox(e.db, sender, nil)
		e.notify.EmailAlerts(e.srv.URL)

		owner := e.signIn("owner@a.example")
		chat := connectionFromLocation(t, owner.consent(t, "/acme/connections/new", url.Values{"app": {"sandbox-chat"}}, "Acme Chat"))
		recv := &alertReceiver{}
		hook := httptest.NewServer(recv)
		defer hook.Close()

		var broken atomic.Bool
		broken.Store(true)
		app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if broken.Load() {
				w.WriteHeader(http.StatusUnprocessableEntity)
				_, _ = w.Write([]byte(`{"error":"the lead has no email"}`))
				return
			}
			_, _ = w.Write([]byte(`{"saved":true}`))
		}))
		defer app.Close()
		g, err := workflow.ParseGraph([]byte(fmt.Sprintf(`{"schema":1,"trigger":{"id":"start","kind":"manual"},
			"nodes":[{"id":"save","kind":"http","config":{"method":"POST","url":%q,"body":{"lead":"{{ $trigger.lead }}"}}}],
			"edges":[{"from":"start","to":"save"}]}`, app.URL)))
		must(t, err)
		w, err := e.workflows.Create(ctx, e.acme, "Lead sync", "", &g, "")
		must(t, err)
		_, err = e.workflows.Publish(ctx, e.acme, w.ID, "", workflow.Checks{})
		must(t, err)

		path := "/api/v1/workspaces/acme/workflows/" + w.ID + "/alerts"
		for _, c := range []struct{ what, body, message string }{
			{"unknown mode", `{"mode": "sometimes", "bell": true}`, "Choose when to alert"},
			{"not staff", `{"mode": "first", "emails": ["client@a.example"]}`, "is not a staff member"},
			{"unknown chat connection", `{"mode": "first", "chatConnectionId": "nope", "chatChannel": "alerts"}`, "Choose a chat connection of this workspace"},
			{"chat without channel", `{"mode": "first", "chatConnectionId": "` + chat + `"}`, "Name the channel"},
			{"webhook not http", `{"mode": "first", "webhookUrl": "ftp://example.com/x"}`, "http:// or https://"},
		} {
			wantAPIError(t, c.what, owner.api("PUT", path, c.body), 422, c.message)
		}
		wantStatus(t, "another account's workflow", e.signIn("owner@b.example").api("PUT", path, `{"mode": "off"}`), 404)
		res := owner.api("PUT", path, `{"mode": "first", "bell": true, "emails": ["admin@a.example"], "chatConnectionId": "`+chat+`", "chatChannel": "general", "webhookUrl": "`+hook.URL+`"}`)
		wantStatus(t, "set alerts", res, 200)
		var set struct {
			Alerts        notify.AlertSettings
			WebhookSecret string
		}
		must(t, json.Unmarshal([]byte(res.Body), &set))
		if set.WebhookSecret == "" || !set.Alerts.HasWebhookSecret || set.Alerts.Inherited {
			t.Fatalf("alerts: %s", res.Body)
		}
		recv.mu.Lock()
		recv.secret = set.WebhookSecret
		recv.mu.Unlock()
		if got := owner.api("GET", path, ""); strings.Contains(got.Body, set.WebhookSecret) {
			t.Fatal("the signing secret is shown again")
		}

		run := func() {
			t.Helper()
			_, err := e.engine.StartRun(ctx, w.ID, []byte(`{"lead":"Ada"}`), "manual", "")
			must(t, err)
			e.workAll(t)
		}
		deliver := func() {
			t.Helper()
			_, err := e.notify.Recoveries(ctx)
			must(t, err)
			_, err = e.notify.DeliverAlerts(ctx)
			must(t, err)
			_, err = outbox.Deliver(ctx)
			must(t, err)
		}
		posted := e.sandbox.Stats().MessagesPosted
		for range 10 {
			run()
			deliver()
		}
		mails := smtpd.Wait(1, 5*time.Second)
		events, bad := recv.got()
		var bells int
		must(t, e.db.Read().QueryRowContext(ctx, `SELECT COUNT(*) FROM notifications WHERE kind = 'failure' AND workspace_id = $1`, e.acme.ID).Scan(&bells))
		if len(mails) != 1 || !strings.Contains(mails[0].Subject, "Lead sync failed: REQUEST_REJECTED") || mails[0].To[0] != "admin@a.example" {
			t.Errorf("failure emails: %d (%+v), want 1 to the admin", len(mails), mails)
		}
		if got := e.sandbox.Stats().MessagesPosted - posted; got != 1 {
			var last string
			_ = e.db.Read().QueryRowContext(ctx, `SELECT last_error FROM alert_deliveries WHERE kind = 'chat'`).Scan(&last)
			t.Errorf("chat messages: %d, want 1 (last error %q)", got, last)
		}
		if strings.Join(events, ",") != "failure" || bad != 0 {
			t.Errorf("webhook events: %v (%d badly signed), want one failure", events, bad)
		}
		if bells != 1 {
			t.Errorf("bell notifications: %d, want 1", bells)
		}
		incidents := owner.api("GET", "/api/v1/workspaces/acme/incidents", "")
		if !strings.Contains(incidents.Body, `"failures":10`) {
			t.Errorf("incidents: %s, want one with 10 failures", incidents.Body)
		}

		broken.Store(false) // fixed: the next run succeeds
		run()
		deliver()
		deliver() // a second look finds nothing more
		mails = smtpd.Wait(2, 5*time.Second)
		events, bad = recv.got()
		if len(mails) != 2 || !strings.Contains(mails[1].Subject, "Lead sync recovered") {
			t.Errorf("emails after the recovery: %d, want the failure and one recovery", len(mails))
		}
		if got := e.sandbox.Stats().MessagesPosted - posted; got != 2 {
			t.Errorf("chat messages after the recovery: %d, want 2", got)
		}
		if strings.Join(events, ",") != "failure,recovery" || bad != 0 {
			t.Errorf("webhook events after the recovery: %v (%d badly signed)", events, bad)
		}
		for _, m := range mails {
			if strings.Contains(m.Raw, set.WebhookSecret) {
				t.Error("an alert email holds the signing secret")
			}
		}
	})
}

// TestFailureAlertsDigestAndDefaults: a workspace's default reaches a
// workflow without settings of its own; in digest mode failures are told
// once a day, in one digest, and every mode tells each failure.
func TestFailureAlertsDigestAndDefaults(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		owner := e.signIn("owner@a.example")
		g, err := workflow.ParseGraph([]byte(`{"schema":1,"trigger":{"id":"start","kind":"manual"},
			"nodes":[{"id":"boom","kind":"http","config":{"method":"GET","url":"http://127.0.0.1:1/nothing","retry":{"maxAttempts":1}}}],
			"edges":[{"from":"start","to":"boom"}]}`))
		must(t, err)
		w, err := e.workflows.Create(ctx, e.acme, "Nightly export", "", &g, "")
		must(t, err)
		_, err = e.workflows.Publish(ctx, e.acme, w.ID, "", workflow.Checks{})
		must(t, err)
		count := func(kind string) int {
			t.Helper()
			var n int
			must(t, e.db.Read().QueryRowContext(ctx, `SELECT COUNT(*) FROM notifications WHERE kind = $1 AND workspace_id = $2`, kind, e.acme.ID).Scan(&n))
			return n
		}
		fail := func(n int) {
			t.Helper()
			for range n {
				_, err := e.engine.StartRun(ctx, w.ID, nil, "manual", "")
				must(t, err)
				e.workAll(t)
			}
			_, err := e.notify.Digests(ctx)
			must(t, err)
		}

		wantStatus(t, "workspace default", owner.api("PUT", "/api/v1/workspaces/acme/alerts", `{"mode": "digest", "bell": true}`), 200)
		got := owner.api("GET", "/api/v1/workspaces/acme/workflows/"+w.ID+"/alerts", "")
		if !strings.Contains(got.Body, `"mode":"digest"`) || !strings.Contains(got.Body, `"inherited":true`) {
			t.Fatalf("workflow alerts: %s, want the workspace's digest default", got.Body)
		}
		fail(3)
		if count("failure") != 0 || count("digest") != 1 {
			t.Fatalf("digest mode: %d failure and %d digest notifications, want 0 and 1", count("failure"), count("digest"))
		}
		fail(2) // within the day: no second digest
		if count("digest") != 1 {
			t.Fatalf("digests within a day: %d, want 1", count("digest"))
		}

		wantStatus(t, "every failure", owner.api("PUT", "/api/v1/workspaces/acme/workflows/"+w.ID+"/alerts", `{"mode": "every", "bell": true}`), 200)
		fail(2)
		if count("failure") != 2 {
			t.Fatalf("every mode: %d failure notifications, want 2", count("failure"))
		}
		wantStatus(t, "inherit again", owner.api("PUT", "/api/v1/workspaces/acme/workflows/"+w.ID+"/alerts", `{"inherit": true}`), 200)
		wantStatus(t, "another account", e.signIn("owner@b.example").api("PUT", "/api/v1/workspaces/acme/alerts", `{"mode": "off"}`), 404)
	})
}

// TestFailureAlertsPage: the workflow page's card saves the settings, shows
// a new webhook signing secret once, and sends a refused form back with
// the reason.
func TestFailureAlertsPage(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		g, err := workflow.ParseGraph([]byte(`{"schema":1,"trigger":{"id":"start","kind":"manual"},
			"nodes":[{"id":"ok","kind":"transform","config":{"output":{}}}],"edges":[{"from":"start","to":"ok"}]}`))
		must(t, err)
		w, err := e.workflows.Create(ctx, e.acme, "Lead sync", "", &g, "")
		must(t, err)
		member := e.signIn("member@a.example")
		page := "/acme/workflows/" + w.ID
		if body := member.get(page).Body; !strings.Contains(body, "Failure alerts") || !strings.Contains(body, "the workspace's default") {
			t.Fatalf("the workflow page has no failure alerts card: %s", body[strings.Index(body, "<main"):][:3000])
		}
		wantSentBack(t, member, "a stranger's email", member.post(page+"/alerts", url.Values{"mode": {"first"}, "emails": {"someone@else.example"}}), page,
			`"someone@else.example" is not a staff member of this account; alerts go to staff only`)
		res := member.post(page+"/alerts", url.Values{"mode": {"every"}, "bell": {"on"}, "emails": {"owner@a.example, admin@a.example"}, "webhookUrl": {"https://ops.example/hook"}})
		wantStatus(t, "save with a webhook", res, 200)
		i := strings.Index(res.Body, "tjsec_")
		if i < 0 {
			t.Fatal("the new signing secret is not shown")
		}
		secret := res.Body[i : i+len("tjsec_")+48]
		again := member.get(page).Body
		if strings.Contains(again, secret) {
			t.Fatal("the signing secret is shown again")
		}
		if !strings.Contains(again, `value="every" selected`) || !strings.Contains(again, "owner@a.example, admin@a.example") || !strings.Contains(again, "Make a new signing secret") {
			t.Fatal("the saved settings are not shown")
		}
		wantRedirect(t, "inherit", member.post(page+"/alerts", url.Values{"inherit": {"1"}}), page)
		wantStatus(t, "another account", e.signIn("owner@b.example").post(page+"/alerts", url.Values{"mode": {"off"}}), 404)
	})
}
