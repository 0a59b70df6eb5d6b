package server_test

import (
	"context"
	"encoding/json"
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"taskjuice/internal/engine"
)

// TestReconnectAccountDecision goes through the real pages and the
// sandbox's consent screen, with the server's workers running: an agent's
// tool call is held on a broken connection; Reconnect first names the
// account the connection was made with and the consent screen suggests it
// (login_hint). Reconnected with the same account, the agent run goes on
// by itself. Reconnected as another account, it stays held — Resume all
// is refused too — and the connection page says so, until "Release them
// anyway" lets it go on and make its call.
func TestReconnectAccountDecision(t *testing.T) {
	for _, mode := range []string{"same", "other"} {
		t.Run(mode, func(t *testing.T) {
			each(t, func(t *testing.T, e *env) {
				ctx := context.Background()
				owner := e.signIn("owner@a.example")
				conn := connectionFromLocation(t, owner.consent(t, "/acme/connections/new", url.Values{"app": {"sandbox-chat"}}, "Acme Chat"))
				res := owner.api("POST", "/api/v1/workspaces/acme/agents", `{"name":"Helper","instructions":"Tell the team.","tools":[{"name":"post","app":"sandbox-chat","action":"post-message","connectionId":"`+conn+`"}]}`)
				wantStatus(t, "create agent", res, 201)
				var agent struct{ Agent struct{ ID string } }
				must(t, json.Unmarshal([]byte(res.Body), &agent))
				e.runWorkers()
				run := func(id string) engine.Run {
					r, err := e.engine.Get(ctx, e.acme.ID, id)
					must(t, err)
					return r
				}
				res = owner.api("POST", "/api/v1/workspaces/acme/agents/"+agent.Agent.ID+"/runs", "")
				wantStatus(t, "start agent run", res, 202)
				var started struct{ RunID string }
				must(t, json.Unmarshal([]byte(res.Body), &started))
				agentRun := started.RunID
				eventually(t, "agent run waits for its decision", 10*time.Second, func() bool { return run(agentRun).Status == engine.StatusWaiting })
				grants := e.sandbox.Grants()
				if len(grants) != 1 {
					t.Fatalf("sandbox grants: %d, want 1", len(grants))
				}
				acmeID := grants[0].AccountID

				_, err := e.sandbox.RevokeAccount("Acme Chat")
				must(t, err)
				wantStatus(t, "agent decision", owner.api("POST", "/api/v1/workspaces/acme/runs/"+agentRun+"/agent-decision",
					`{"toolCall":{"tool":"post","input":{"channel":"general","text":"Lead handled"}}}`), 200)
				eventually(t, "agent run held", 10*time.Second, func() bool { return run(agentRun).PauseReason == engine.PauseReauth })
				stepsHeld := run(agentRun).StepsDone

				// The connection page's Reconnect leads to a page naming the
				// account, whose button starts the consent.
				page := owner.get("/acme/connections/" + conn)
				if !strings.Contains(page.Body, `<form method="get" action="/acme/connections/`+conn+`/reconnect"`) {
					t.Fatal("the connection page's Reconnect does not lead to the confirmation page")
				}
				page = owner.get("/acme/connections/" + conn + "/reconnect")
				wantStatus(t, "reconnect page", page, 200)
				if body := html.UnescapeString(page.Body); !strings.Contains(body, "This connection was made with the account <strong>“Acme Chat”</strong>. Sign in to Acme Chat again on the next screen") ||
					!strings.Contains(body, `<form method="post" action="/acme/connections/`+conn+`/reconnect"`) {
					t.Fatalf("reconnect page does not name the account:\n%.2000s", body)
				}
				start := owner.post("/acme/connections/"+conn+"/reconnect", nil)
				authURL, err := url.Parse(start.Header.Get("Location"))
				must(t, err)
				if got := authURL.Query().Get("login_hint"); got != acmeID {
					t.Fatalf("login_hint: got %q, want the account's id %q", got, acmeID)
				}
				req, _ := http.NewRequest("GET", authURL.String(), nil)
				consentPage := owner.do(req)
				wantStatus(t, "consent page", consentPage, 200)
				if !strings.Contains(consentPage.Body, `value="Acme Chat"`) || !strings.Contains(consentPage.Body, "<strong>Sandbox Chat</strong> wants to access your account") {
					t.Fatalf("consent page does not suggest Acme Chat for Sandbox Chat:\n%.1500s", consentPage.Body)
				}

				account := "Acme Chat"
				if mode == "other" {
					account = "Other Team"
				}
				back := owner.consent(t, "/acme/connections/"+conn+"/reconnect", nil, account)
				wantRedirect(t, "after consent", back, "/acme/connections/"+conn)
				page = owner.get("/acme/connections/" + conn)
				body := html.UnescapeString(page.Body)
				if mode == "same" {
					eventually(t, "agent run resumed by itself", 10*time.Second, func() bool {
						r := run(agentRun)
						return r.Status == engine.StatusWaiting && r.StepsDone > stepsHeld
					})
					if strings.Contains(body, "Release them anyway") || strings.Contains(body, "kept held") {
						t.Fatal("a same-account reconnect shows the account notice")
					}
					if got := e.sandbox.Stats().MessagesPosted; got != 1 {
						t.Fatalf("messages posted: %d, want the agent's 1", got)
					}
					return
				}

				// Another account: the flash and the page say the run is kept held.
				for _, want := range []string{"The runs it held are kept held", "Reconnected as “Other Team” instead of “Acme Chat”.", "1 held run is kept held so it does not run against another account's data.",
					`action="/acme/connections/` + conn + `/release-held"`, "Release them anyway"} {
					if !strings.Contains(body, want) {
						t.Errorf("connection page lacks %q", want)
					}
				}
				// The engine has seen the reconnect and resumed nothing.
				eventually(t, "the reconnect consumed", 10*time.Second, func() bool {
					var open int
					must(t, e.db.Read().QueryRowContext(ctx, `SELECT COUNT(*) FROM connection_signals s WHERE s.connection_id = $1 AND s.kind = 'reauthorized'
						AND NOT EXISTS (SELECT 1 FROM signal_consumption c WHERE c.signal_id = s.id AND c.consumer = 'engine')`, conn).Scan(&open))
					return open == 0
				})
				if r := run(agentRun); r.Status != engine.StatusPaused || r.PauseReason != engine.PauseReauth {
					t.Fatalf("agent run after a reconnect as another account: %s (%s), want kept paused for reauth", r.Status, r.PauseReason)
				}
				why, err := e.engine.KeptHeld(ctx, run(agentRun))
				must(t, err)
				if !strings.Contains(why, "“Other Team” instead of “Acme Chat”") {
					t.Fatalf("why the run is held: %q", why)
				}
				wantSentBack(t, owner, "resume all while kept held", owner.post("/acme/connections/"+conn+"/resume-held", nil), "/acme/connections/"+conn, "")
				runPage := owner.get("/acme/monitoring/workflow-runs/" + run(agentRun).WorkflowID + "/" + agentRun)
				if b := html.UnescapeString(runPage.Body); !strings.Contains(b, "Still held: its connection was reconnected as “Other Team” instead of “Acme Chat”") || strings.Contains(b, "press Resume") {
					t.Fatalf("the kept-held run's page does not say why it is still held: %.3000s", b)
				}
				// Reconnecting again names the original account, not the new one.
				page = owner.get("/acme/connections/" + conn + "/reconnect")
				if !strings.Contains(html.UnescapeString(page.Body), "made with the account <strong>“Acme Chat”</strong>") {
					t.Fatal("while kept held, the reconnect page does not ask for the original account")
				}
				if got := e.sandbox.Stats().MessagesPosted; got != 0 {
					t.Fatalf("messages posted while kept held: %d, want 0", got)
				}

				// Release them anyway: the agent run goes on and makes its call.
				wantRedirect(t, "release", owner.post("/acme/connections/"+conn+"/release-held", nil), "/acme/connections/"+conn)
				page = owner.get("/acme/connections/" + conn)
				if !strings.Contains(page.Body, "Released. The held runs go on") || strings.Contains(page.Body, "Release them anyway") {
					t.Fatal("after release: no flash, or the notice is still shown")
				}
				eventually(t, "agent run resumed after the release", 10*time.Second, func() bool {
					r := run(agentRun)
					return r.Status == engine.StatusWaiting && r.StepsDone > stepsHeld
				})
				if got := e.sandbox.Stats().MessagesPosted; got != 1 {
					t.Fatalf("messages posted: %d, want the agent's 1", got)
				}
				if strings.Contains(owner.get("/acme/connections/"+conn).Body, "Release them anyway") {
					t.Fatal("the notice came back")
				}
				e.checkNoSecretLeaked()
			})
		})
	}
}

// TestConsentNamesTheApp: connecting Sandbox Inbox opens a consent screen
// that names Sandbox Inbox, not Sandbox Chat, and connecting it works.
func TestConsentNamesTheApp(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		owner := e.signIn("owner@a.example")
		start := owner.post("/acme/connections/new", url.Values{"app": {"sandbox-inbox"}})
		req, _ := http.NewRequest("GET", start.Header.Get("Location"), nil)
		page := owner.do(req)
		wantStatus(t, "Sandbox Inbox consent page", page, 200)
		if !strings.Contains(page.Body, "<strong>Sandbox Inbox</strong> wants to access your account") || strings.Contains(page.Body, "Sandbox Chat") {
			t.Fatalf("Sandbox Inbox consent page:\n%.1500s", page.Body)
		}
		id := connectionFromLocation(t, owner.consent(t, "/acme/connections/new", url.Values{"app": {"sandbox-inbox"}}, "Acme Mail"))
		c, err := e.connections.Get(context.Background(), e.acme, id)
		must(t, err)
		if c.AppKey != "sandbox-inbox" || c.ExternalAccountName != "Acme Mail" {
			t.Fatalf("connection: %s as %q, want sandbox-inbox as Acme Mail", c.AppKey, c.ExternalAccountName)
		}
	})
}
