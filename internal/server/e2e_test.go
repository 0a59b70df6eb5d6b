package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"taskjuice/internal/catalog"
	"taskjuice/internal/connection"
	"taskjuice/internal/engine"
	"taskjuice/internal/sandbox"
	"taskjuice/internal/workflow"
)

// consent walks the real consent flow from a TaskJuice form post to the
// sandbox's consent page and back through /oauth/callback. It returns where
// TaskJuice sent the person at the end.
func (b *browser) consent(t *testing.T, startPath string, form url.Values, account string) response {
	t.Helper()
	res := b.post(startPath, form)
	if res.StatusCode != http.StatusSeeOther || !strings.Contains(res.Header.Get("Location"), "/sandbox/oauth/authorize?") {
		t.Fatalf("start consent: got %d to %q, want a redirect to the consent screen", res.StatusCode, res.Header.Get("Location"))
	}
	authURL := res.Header.Get("Location")
	q, _ := url.Parse(authURL)
	if q.Query().Get("code_challenge_method") != "S256" || q.Query().Get("state") == "" {
		t.Fatalf("authorization request lacks PKCE S256 or state: %s", authURL)
	}
	req, _ := http.NewRequest("GET", authURL, nil)
	page := b.do(req)
	wantStatus(t, "consent page", page, 200)
	m := regexp.MustCompile(`name="request" value="([^"]+)"`).FindStringSubmatch(page.Body)
	if m == nil {
		t.Fatalf("consent page has no request id:\n%.500s", page.Body)
	}
	approve := b.post("/sandbox/oauth/authorize", url.Values{"request": {m[1]}, "account": {account}, "decision": {"allow"}})
	cb := approve.Header.Get("Location")
	if approve.StatusCode != http.StatusFound && approve.StatusCode != http.StatusSeeOther || !strings.Contains(cb, "/oauth/callback?") {
		t.Fatalf("allow: got %d to %q, want a redirect to /oauth/callback", approve.StatusCode, cb)
	}
	req, _ = http.NewRequest("GET", cb, nil)
	return b.do(req)
}

func connectionFromLocation(t *testing.T, res response) string {
	t.Helper()
	loc := res.Header.Get("Location")
	i := strings.LastIndex(loc, "/connections/")
	if res.StatusCode != http.StatusSeeOther || i < 0 {
		t.Fatalf("after consent: got %d to %q; body %.300s", res.StatusCode, loc, res.Body)
	}
	return loc[i+len("/connections/"):]
}

// TestConnectionLifecycle drives the credential lifecycle end to end over
// HTTP against the sandbox provider: connect, renew ahead of expiry, ride
// out transient failures, break on a revoked grant, refuse a manual
// refresh, reconnect.
func TestConnectionLifecycle(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		owner := e.signIn("owner@a.example")

		// Connect through the consent page.
		id := connectionFromLocation(t, owner.consent(t, "/acme/connections/new", url.Values{"app": {"sandbox-chat"}, "label": {"Team chat"}}, "Acme Chat"))
		detail := owner.get("/acme/connections/" + id)
		wantStatus(t, "connection page", detail, 200)
		if !strings.Contains(detail.Body, "Connected and working.") || !strings.Contains(detail.Body, "Acme Chat") {
			t.Fatal("connected connection does not show active with its account")
		}
		stats := func() int {
			n := 0
			for _, v := range e.sandbox.Stats().Refreshes {
				n += v
			}
			return n
		}

		// Shorter tokens: after one manual refresh the token lives 10
		// minutes. A refresher whose clock the test moves (as another
		// process would see time pass) renews it in its lead window,
		// before it expires.
		cat, err := catalog.Load(catalog.Options{Getenv: func(string) string { return "" }, SandboxURL: e.srv.URL + "/sandbox"})
		must(t, err)
		var shift atomic.Int64
		later := connection.NewRefresher(e.connections, connection.CatalogOAuth(cat, e.srv.URL+"/oauth/callback"),
			connection.RefresherOptions{Now: func() time.Time { return time.Now().Add(time.Duration(shift.Load())) }})
		if _, err := e.sandbox.SetLifetimes(10*time.Minute, 0); err != nil {
			t.Fatal(err)
		}
		wantStatus(t, "manual refresh", owner.api("POST", "/api/v1/connections/"+id+"/refresh", ""), 200)
		c, _ := e.connections.GetInAccount(ctx, mustP(t, e, "owner@a.example").AccountID, id)
		expiry := *c.AccessExpiresAt
		before := stats()
		if n, err := later.Pass(ctx); err != nil || n != 0 {
			t.Fatalf("refresher pass right after a refresh: renewed %d, %v; want 0", n, err)
		}
		shift.Store(int64(9 * time.Minute))
		if n, err := later.Pass(ctx); err != nil || n != 1 {
			t.Fatalf("refresher pass: renewed %d, %v; want 1", n, err)
		}
		c, _ = e.connections.GetInAccount(ctx, mustP(t, e, "owner@a.example").AccountID, id)
		if stats() != before+1 || !time.Now().Before(expiry) || !c.AccessExpiresAt.After(expiry) {
			t.Fatalf("ahead-of-expiry renewal: refreshes %d→%d, old expiry %v, new %v", before, stats(), expiry, c.AccessExpiresAt)
		}

		// Three transient failures: retried with backoff, still active, no
		// needs-reauthorization signal.
		must(t, e.sandbox.FailNext(3, sandbox.Fault500, 0))
		before = stats()
		wantStatus(t, "refresh through transient failures", owner.api("POST", "/api/v1/connections/"+id+"/refresh", ""), 200)
		if stats() != before+1 {
			t.Fatalf("refreshes after transient failures: %d, want %d", stats(), before+1)
		}
		sigs, _ := e.connections.Signals(ctx, id)
		if len(sigs) != 0 {
			t.Fatalf("signals after transient failures: %+v", sigs)
		}

		// Revoke the grant at the provider: the next refresh breaks it, once.
		if n, err := e.sandbox.RevokeAccount("Acme Chat"); err != nil || n != 1 {
			t.Fatalf("revoke grant: %d, %v", n, err)
		}
		// Nine minutes on, the last 10-minute token is due for renewal: the
		// next pass meets the revoked grant.
		shift.Store(int64(9*time.Minute + 9*time.Minute))
		if _, err := later.Pass(ctx); err != nil {
			t.Fatal(err)
		}
		res := owner.api("GET", "/api/v1/connections/"+id, "")
		var got connection.Connection
		must(t, json.Unmarshal([]byte(res.Body), &got))
		if got.Status != connection.StatusError || got.StatusDescription != "Reconnection needed." {
			t.Fatalf("after revoked grant: %s %q, want error \"Reconnection needed.\"", got.Status, got.StatusDescription)
		}
		sigs, _ = e.connections.Signals(ctx, id)
		if len(sigs) != 1 || sigs[0].Kind != connection.SignalNeedsReauth {
			t.Fatalf("signals after revoked grant: %+v, want exactly one needs_reauth", sigs)
		}

		// Manual refresh is refused with the exact message.
		r := owner.api("POST", "/api/v1/connections/"+id+"/refresh", "")
		wantStatus(t, "manual refresh of a broken connection", r, 400)
		if _, msg := apiError(t, r); msg != "Connection cannot be refreshed. Please reconnect your connection." {
			t.Fatalf("refresh refusal: %q", msg)
		}

		// Reconnect: same id, active, one reauthorized signal, full history.
		again := connectionFromLocation(t, owner.consent(t, "/acme/connections/"+id+"/reconnect", url.Values{}, "Acme Chat"))
		if again != id {
			t.Fatalf("reconnect landed on %s, want the same connection %s", again, id)
		}
		res = owner.api("GET", "/api/v1/connections/"+id, "")
		must(t, json.Unmarshal([]byte(res.Body), &got))
		if got.Status != connection.StatusActive {
			t.Fatalf("after reconnect: %s, want active", got.Status)
		}
		sigs, _ = e.connections.Signals(ctx, id)
		if len(sigs) != 2 || sigs[1].Kind != connection.SignalReauthorized {
			t.Fatalf("signals after reconnect: %+v, want needs_reauth then reauthorized", sigs)
		}
		var hist struct{ History []connection.Event }
		must(t, json.Unmarshal([]byte(owner.api("GET", "/api/v1/connections/"+id+"/history", "").Body), &hist))
		var path []string
		for _, h := range hist.History {
			path = append(path, string(h.From)+"→"+string(h.To))
		}
		if want := "→pending pending→active active→error error→active"; strings.Join(path, " ") != want {
			t.Fatalf("history: %s, want %s", strings.Join(path, " "), want)
		}
		last := hist.History[len(hist.History)-1]
		if last.Reason != "reconnected" || last.Detail["externalAccountChanged"] != "false" || last.ActorUserID == "" {
			t.Fatalf("reconnect entry: %+v", last)
		}

		// The chat API works with the stored token.
		tok, err := e.refresher.AccessToken(ctx, id)
		must(t, err)
		req, _ := http.NewRequest("GET", e.srv.URL+"/sandbox/api/channels", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		wantStatus(t, "sandbox API with the stored token", e.browser().do(req), 200)
		// And no token shows in a page, a response or the log.
		for _, body := range []string{detail.Body, owner.get("/acme/connections").Body, res.Body, e.log.String()} {
			if strings.Contains(body, tok) {
				t.Fatal("an access token leaked into a response or the log")
			}
		}
	})
}

func TestConsentDeniedChangesNothing(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		owner := e.signIn("owner@a.example")
		res := owner.post("/acme/connections/new", url.Values{"app": {"sandbox-chat"}})
		authURL := res.Header.Get("Location")
		req, _ := http.NewRequest("GET", authURL, nil)
		page := owner.do(req)
		m := regexp.MustCompile(`name="request" value="([^"]+)"`).FindStringSubmatch(page.Body)
		if m == nil {
			t.Fatal("no consent request id")
		}
		deny := owner.post("/sandbox/oauth/authorize", url.Values{"request": {m[1]}, "account": {"X"}, "decision": {"deny"}})
		req, _ = http.NewRequest("GET", deny.Header.Get("Location"), nil)
		back := owner.do(req)
		wantStatus(t, "denied consent", back, 400)
		if !strings.Contains(back.Body, "did not grant access") {
			t.Fatalf("denied page: %.300s", back.Body)
		}
		// A forged state and a missing code get clear pages too.
		for q, want := range map[string]string{"state=forged&code=x": "not recognised", "code=x": "incomplete"} {
			r := owner.get("/oauth/callback?" + q)
			wantStatus(t, q, r, 400)
			if !strings.Contains(r.Body, want) {
				t.Fatalf("%s: page lacks %q", q, want)
			}
		}
	})
}

// TestResumeAllAfterReconnect: runs held on a broken connection show on
// "Paused for reauth" grouped by connection; once it is reconnected,
// "Resume all" sets them going and they complete.
func TestResumeAllAfterReconnect(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		owner := e.signIn("owner@a.example")
		id := connectionFromLocation(t, owner.consent(t, "/acme/connections/new", url.Values{"app": {"sandbox-chat"}}, "Acme Chat"))
		cfg, _ := json.Marshal(map[string]any{"app": "sandbox-chat", "action": "post-message", "inputs": map[string]any{"channel": "general", "text": "hi"}})
		g := workflow.Graph{Schema: 1, Trigger: &workflow.Node{ID: "start", Kind: workflow.TriggerManual},
			Nodes: []workflow.Node{{ID: "post", Kind: workflow.NodeAction, Config: cfg, Connection: &workflow.Binding{ID: id}}},
			Edges: []workflow.Edge{{From: "start", To: "post"}}}
		w, err := e.workflows.Create(ctx, e.acme, "Poster", "", &g, "")
		must(t, err)
		_, err = e.workflows.Publish(ctx, e.acme, w.ID, "", workflow.Checks{})
		must(t, err)
		_, err = e.sandbox.RevokeAccount("Acme Chat")
		must(t, err)
		drain := func() {
			for {
				did, err := e.engine.Work(ctx)
				must(t, err)
				if !did {
					return
				}
			}
		}
		var runs []string
		for range 2 {
			res := owner.api("POST", "/api/v1/workspaces/acme/workflows/"+w.ID+"/runs", "")
			wantStatus(t, "start", res, 202)
			var s struct{ RunID string }
			must(t, json.Unmarshal([]byte(res.Body), &s))
			runs = append(runs, s.RunID)
		}
		drain()
		// The workflow's page says its connection is broken, with a link.
		wfPage := owner.get("/acme/workflows/" + w.ID)
		if !strings.Contains(wfPage.Body, "which is in <strong>error</strong>") || !strings.Contains(wfPage.Body, `href="/acme/connections/`+id+`">Open the connection`) {
			t.Fatal("the workflow page does not say its connection is broken")
		}
		view := "/acme/monitoring/workflow-runs?reason=reauth&status=paused"
		page := owner.get(view)
		if !strings.Contains(page.Body, "2 held") || !strings.Contains(page.Body, "Reconnect first") || strings.Contains(page.Body, ">Resume all<") {
			t.Fatal("held runs before reconnect: expected 2 held and no Resume all")
		}
		connectionFromLocation(t, owner.consent(t, "/acme/connections/"+id+"/reconnect", url.Values{}, "Acme Chat"))
		page = owner.get(view)
		if !strings.Contains(page.Body, ">Resume all<") {
			t.Fatal("no Resume all after reconnect")
		}
		wantRedirect(t, "resume all", owner.post("/acme/connections/"+id+"/resume-held", nil), view)
		drain()
		for _, r := range runs {
			run, err := e.engine.Get(ctx, e.acme.ID, r)
			must(t, err)
			if run.Status != engine.StatusCompleted {
				t.Fatalf("run %s: %s, want completed", r, run.Status)
			}
		}
		if got := e.sandbox.Stats().MessagesPosted; got != 2 {
			t.Fatalf("messages posted: %d, want 2", got)
		}
	})
}
