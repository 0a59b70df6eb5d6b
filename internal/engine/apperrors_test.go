package engine_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"taskjuice/internal/catalog"
	"taskjuice/internal/connection"
	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
	"taskjuice/internal/engine"
	"taskjuice/internal/expr"
	"taskjuice/internal/workflow"
)

// fakeSlack answers as Slack's Web API documents
// (https://api.slack.com/web#evaluating_responses): HTTP 200 whatever
// happened, {"ok": false, "error": code} on failure.
type fakeSlack struct {
	mu sync.Mutex
	// replies scripts chat.postMessage by channel: each call takes the
	// next reply; the last one repeats.
	replies map[string][]slackReply
	// refused makes the token endpoint refuse the refresh token, as Slack
	// does: HTTP 200 {"ok": false, "error": "invalid_refresh_token"}.
	refused bool
	posts   map[string]int
	tokens  []string // the bearer of each chat.postMessage call
	renews  int
}

type slackReply struct {
	body       string
	retryAfter string
}

func (s *fakeSlack) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	switch r.URL.Path {
	case "/api/oauth.v2.access":
		s.renews++
		if s.refused || r.FormValue("grant_type") != "refresh_token" {
			_, _ = w.Write([]byte(`{"ok":false,"error":"invalid_refresh_token"}`))
			return
		}
		_, _ = w.Write([]byte(`{"ok":true,"access_token":"xoxe.xoxb-renewed","refresh_token":"xoxe-2","expires_in":43200,"token_type":"bot","team":{"id":"T1","name":"Acme"}}`))
	case "/api/chat.postMessage":
		var in struct {
			Channel string `json:"channel"`
			Text    string `json:"text"`
		}
		_ = json.NewDecoder(r.Body).Decode(&in)
		s.tokens = append(s.tokens, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
		script := s.replies[in.Channel]
		n := s.posts[in.Channel]
		s.posts[in.Channel] = n + 1
		if len(script) == 0 {
			_, _ = w.Write([]byte(`{"ok":false,"error":"channel_not_found"}`))
			return
		}
		reply := script[min(n, len(script)-1)]
		if reply.retryAfter != "" {
			w.Header().Set("Retry-After", reply.retryAfter)
		}
		_, _ = w.Write([]byte(reply.body))
	default:
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"ok":false,"error":"unknown_method"}`))
	}
}

func (s *fakeSlack) calls(channel string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.posts[channel]
}

// slackFixture points a copy of the built-in Slack definition (same
// actions, same errors convention) at a local server answering as Slack,
// through the --apps-file format, and binds a connection to it.
func slackFixture(t *testing.T, d *db.DB) (*fixture, *fakeSlack, string) {
	t.Helper()
	f := setup(t, d)
	fs := &fakeSlack{replies: map[string][]slackReply{}, posts: map[string]int{}}
	ts, _ := counter(t, "127.0.0.1", fs.ServeHTTP)

	raw, err := os.ReadFile("../catalog/apps/slack.json")
	must(t, err)
	var def map[string]any
	must(t, json.Unmarshal([]byte(strings.ReplaceAll(string(raw), "https://slack.com", ts.URL)), &def))
	def["key"], def["clientId"], def["clientSecretEnv"] = "slack-local", "cid", "SLACK_LOCAL_SECRET"
	file := filepath.Join(t.TempDir(), "apps.json")
	b, _ := json.Marshal([]any{def})
	must(t, os.WriteFile(file, b, 0o600))
	f.cat, err = catalog.Load(catalog.Options{GenericAppsFile: file, SandboxURL: f.sbURL,
		Getenv: func(k string) string { return map[string]string{"SLACK_LOCAL_SECRET": "shh"}[k] }})
	must(t, err)
	if app, _ := f.cat.App("slack-local"); app.Errors == nil || app.Errors.InBody == nil {
		t.Fatalf("slack-local: errors %+v, want Slack's inBody rule", app.Errors)
	}

	refresher := connection.NewRefresher(f.conns, connection.CatalogOAuth(f.cat, "http://127.0.0.1/callback"),
		connection.RefresherOptions{Backoff: time.Millisecond, HTTPClient: privateOK})
	apps := connection.NewAppClient(f.conns, refresher, f.cat, privateOK)
	f.eng = engine.New(d, f.wfs, engine.Builtins(f.cat, apps, privateOK), engine.Expressions(expr.Limits{}),
		engine.Options{RetryBackoff: 10 * time.Millisecond, Now: f.clk.Now})

	c, err := f.conns.CreateWithCredential(f.ctx, f.ws, connection.New{AppKey: "slack-local", Label: "Acme Slack", Status: connection.StatusActive},
		connection.Credential{OAuth: connection.FromOAuth2(&oauth2.Token{AccessToken: "xoxe.xoxb-1", RefreshToken: "xoxe-1", TokenType: "Bearer", Expiry: time.Now().Add(time.Hour)})},
		connection.System)
	must(t, err)
	f.connID = c.ID
	return f, fs, c.ID
}

func slackPost(channel string) workflow.Node {
	cfg, _ := json.Marshal(map[string]any{"app": "slack-local", "action": "send-message", "inputs": map[string]any{"channel": channel, "text": "Hello"}})
	return workflow.Node{ID: "post", Kind: workflow.NodeAction, Config: cfg}
}

// A Slack action is judged the way Slack reports: HTTP 200 with "ok":
// false is a failure carrying Slack's code, not a completed step.
func TestSlackFailureInsideHTTP200(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f, fs, _ := slackFixture(t, d)
		fs.replies["C-OK"] = []slackReply{{body: `{"ok":true,"channel":"C-OK","ts":"1712345678.000100","message":{"text":"Hello"}}`}}

		run, step := f.runOnce(f.publish([]workflow.Node{f.bound(slackPost("C-MISSING"))}), `{}`)
		if run.Status != engine.StatusFailed || step.Status != engine.StepFailed || step.Error == nil {
			t.Fatalf("channel_not_found: run %s, step %s %+v; want both failed", run.Status, step.Status, step.Error)
		}
		if e := step.Error; e.Code != "channel_not_found" || e.ProviderStatus != 200 || e.Retryable || !strings.Contains(e.Message, "channel_not_found") {
			t.Fatalf("channel_not_found step error: got %+v, want code channel_not_found, providerStatus 200, not retryable", e)
		}
		if n := fs.calls("C-MISSING"); n != 1 {
			t.Fatalf("chat.postMessage calls for a plain failure: got %d, want 1 (not retried)", n)
		}
		if c, err := f.conns.Get(f.ctx, f.ws, f.connID); err != nil || c.Status != connection.StatusActive {
			t.Fatalf("connection after channel_not_found: %s, %v; want still active", c.Status, err)
		}

		run, step = f.runOnce(f.publish([]workflow.Node{f.bound(slackPost("C-OK"))}), `{}`)
		if run.Status != engine.StatusCompleted || step.Error != nil {
			t.Fatalf("ok true: run %s, step error %+v; want completed", run.Status, step.Error)
		}
		var out struct {
			OK bool   `json:"ok"`
			TS string `json:"ts"`
		}
		if err := json.Unmarshal(step.Output, &out); err != nil || !out.OK || out.TS != "1712345678.000100" {
			t.Fatalf("ok true output: %s (%v); want Slack's answer", step.Output, err)
		}
	})
}

// "ratelimited" is transient by Slack's documentation: the step is retried
// no sooner than Slack's Retry-After, and completes when Slack lets it.
func TestSlackRateLimitedIsRetried(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f, fs, _ := slackFixture(t, d)
		fs.replies["C-BUSY"] = []slackReply{
			{body: `{"ok":false,"error":"ratelimited"}`, retryAfter: "30"},
			{body: `{"ok":true,"channel":"C-BUSY","ts":"1.2"}`},
		}
		wf := f.publish([]workflow.Node{f.bound(slackPost("C-BUSY"))})
		id, err := f.eng.StartRun(f.ctx, wf, json.RawMessage(`{}`), "manual", "")
		must(t, err)
		f.drain()
		steps, err := f.eng.Steps(f.ctx, f.ws.ID, id)
		must(t, err)
		if len(steps) != 1 || steps[0].Error == nil {
			t.Fatalf("after the first attempt: %d steps %+v; want one failed attempt", len(steps), steps)
		}
		if e := steps[0].Error; e.Code != "ratelimited" || !e.Retryable || e.ProviderStatus != 200 || e.RetryAfterSeconds != 30 {
			t.Fatalf("ratelimited step error: got %+v, want code ratelimited, retryable, providerStatus 200, retryAfterSeconds 30", e)
		}
		if r := f.run(id); r.Status.Terminal() {
			t.Fatalf("run after ratelimited: %s, want it to wait for a retry", r.Status)
		}
		// The engine's own backoff (10ms) is shorter than Slack asked: the
		// retry is not due before Slack's 30 seconds.
		f.clk.Advance(20 * time.Second)
		f.drain()
		if n := fs.calls("C-BUSY"); n != 1 {
			t.Fatalf("calls 20s after ratelimited with Retry-After 30: got %d, want 1", n)
		}
		f.drainPast(f.clk, id)
		if r := f.run(id); r.Status != engine.StatusCompleted || fs.calls("C-BUSY") != 2 {
			t.Fatalf("after Retry-After: run %s after %d calls; want completed after 2", r.Status, fs.calls("C-BUSY"))
		}
	})
}

// A credential code inside a 200 takes the path of an HTTP 401: the token
// is renewed once; when Slack refuses the renewal too, the connection
// needs reauthorization and the run is held for it, not failed.
func TestSlackDeadCredentialInsideHTTP200(t *testing.T) {
	for _, tc := range []struct {
		name    string
		refused bool
		calls   int
	}{
		// token_revoked, then the refresh token refused: one call, one renewal.
		{"refresh refused", true, 1},
		// account_inactive whatever the token: the renewed token is tried once.
		{"renewed token refused too", false, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dbtest.Each(t, func(t *testing.T, d *db.DB) {
				f, fs, connID := slackFixture(t, d)
				fs.refused = tc.refused
				code := "token_revoked"
				if !tc.refused {
					code = "account_inactive"
				}
				fs.replies["C-1"] = []slackReply{{body: `{"ok":false,"error":"` + code + `"}`}}
				wf := f.publish([]workflow.Node{f.bound(slackPost("C-1"))})
				id, err := f.eng.StartRun(f.ctx, wf, json.RawMessage(`{}`), "manual", "")
				must(t, err)
				f.drain()
				r := f.run(id)
				if r.Status != engine.StatusPaused || r.PauseReason != engine.PauseReauth || r.PausedConnectionID != connID {
					t.Fatalf("run after %s: %s (%s, %q); want paused for reauth on %s", code, r.Status, r.PauseReason, r.PausedConnectionID, connID)
				}
				c, err := f.conns.Get(f.ctx, f.ws, connID)
				must(t, err)
				if c.Status != connection.StatusError {
					t.Fatalf("connection after %s: %s, want error (reconnection needed)", code, c.Status)
				}
				fs.mu.Lock()
				defer fs.mu.Unlock()
				if fs.renews != 1 || len(fs.tokens) != tc.calls {
					t.Fatalf("renewals %d, chat.postMessage calls %d (tokens %v); want 1 renewal and %d calls", fs.renews, len(fs.tokens), fs.tokens, tc.calls)
				}
				if !tc.refused && fs.tokens[1] != "xoxe.xoxb-renewed" {
					t.Fatalf("second call's token: got %q, want the renewed one", fs.tokens[1])
				}
			})
		})
	}
}

// An HTTP Request step bound to the Slack connection is judged Slack's way
// when it calls Slack's own hosts; a host merely added to the connection
// is not Slack, so its answers are judged by their HTTP status alone and
// cannot kill the connection with a Slack error code.
func TestSlackRulesOnlyForSlackHosts(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f, fs, connID := slackFixture(t, d)
		app, _ := f.cat.App("slack-local")
		slackURL := app.APIHosts[0]

		run, step := f.runOnce(f.publish([]workflow.Node{f.bound(httpStep(slackURL + "/api/chat.postMessage"))}), `{}`)
		if run.Status != engine.StatusFailed || step.Error == nil || step.Error.Code != "channel_not_found" || step.Error.ProviderStatus != 200 {
			t.Fatalf("HTTP step to Slack answering ok false: run %s, step error %+v; want failed with channel_not_found", run.Status, step.Error)
		}

		relay, hits := counter(t, "127.0.0.1", func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`{"ok":false,"error":"invalid_auth"}`))
		})
		_, err := f.conns.SetAllowedDomains(f.ctx, f.ws, connID, []string{relay.URL}, connection.System)
		must(t, err)
		run, step = f.runOnce(f.publish([]workflow.Node{f.bound(httpStep("{{ $trigger.target }}"))}), `{"target": "`+relay.URL+`/hook"}`)
		if run.Status != engine.StatusCompleted || hits.Load() != 1 {
			t.Fatalf("HTTP step to an added host answering ok false: run %s (%+v) after %d requests; want completed after 1", run.Status, step.Error, hits.Load())
		}
		c, err := f.conns.Get(f.ctx, f.ws, connID)
		must(t, err)
		fs.mu.Lock()
		renews := fs.renews
		fs.mu.Unlock()
		if c.Status != connection.StatusActive || renews != 0 {
			t.Fatalf("connection after an added host said invalid_auth: %s after %d renewals; want active, none", c.Status, renews)
		}
	})
}
