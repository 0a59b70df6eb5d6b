package server_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"taskjuice/internal/account"
	"taskjuice/internal/connection"
	"taskjuice/internal/egress"
	"taskjuice/internal/workflow"
)

// testSlackSigningSecret is the Slack signing secret the test catalog
// loads (TASKJUICE_APP_SLACK_SIGNING_SECRET).
const testSlackSigningSecret = "slack-signing-secret-e2e-0f1e2d3c4b5a"

// appHosts sends the calls TaskJuice makes to a real app's API origin
// (https://api.github.com) to a local fake of that API instead, through a
// client that may reach loopback, as an operator's --http-allow-private
// would; every other call keeps the default guard.
type appHosts struct {
	mu sync.Mutex
	to map[string]*url.URL
}

// route sends calls to origin to the fake at fakeURL.
func (h *appHosts) route(t *testing.T, origin, fakeURL string) {
	t.Helper()
	u, err := url.Parse(fakeURL)
	must(t, err)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.to == nil {
		h.to = map[string]*url.URL{}
	}
	h.to[origin] = u
}

func (h *appHosts) client() *http.Client {
	if h == nil {
		return nil
	}
	guarded := egress.Transport(egress.Policy{})
	loopback := egress.Transport(egress.Policy{AllowPrivate: true})
	return &http.Client{Timeout: time.Minute, Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		h.mu.Lock()
		fake, ok := h.to[r.URL.Scheme+"://"+r.URL.Host]
		h.mu.Unlock()
		if !ok {
			return guarded.RoundTrip(r)
		}
		r2 := r.Clone(r.Context())
		r2.URL.Scheme, r2.URL.Host, r2.Host = fake.Scheme, fake.Host, ""
		return loopback.RoundTrip(r2)
	})}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// appRun is one run an app's instant trigger started.
type appRun struct {
	dedup   string
	payload map[string]any
}

// appRuns lists the workflow's instant runs, after working the engine.
func appRuns(t *testing.T, e *env, workflowID string) []appRun {
	t.Helper()
	ctx := context.Background()
	for range 100 {
		did, err := e.engine.Work(ctx)
		must(t, err)
		if !did {
			break
		}
	}
	rows, err := e.db.Read().QueryContext(ctx, `SELECT dedup_key, trigger_payload FROM runs
		WHERE workflow_id = $1 AND source = 'instant' ORDER BY created_at, id`, workflowID)
	must(t, err)
	defer rows.Close()
	var out []appRun
	for rows.Next() {
		var r appRun
		var raw string
		must(t, rows.Scan(&r.dedup, &raw))
		must(t, json.Unmarshal([]byte(raw), &r.payload))
		out = append(out, r)
	}
	must(t, rows.Err())
	return out
}

// appTriggerGraph is an app's trigger through connID → a Transform.
func appTriggerGraph(connID, app, trig string, inputs map[string]string) *workflow.Graph {
	cfg, _ := json.Marshal(map[string]any{"app": app, "trigger": trig, "inputs": inputs})
	out, _ := json.Marshal(map[string]any{"output": map[string]bool{"ok": true}})
	return &workflow.Graph{Schema: 1,
		Trigger: &workflow.Node{ID: "start", Kind: workflow.TriggerApp, Config: cfg, Connection: &workflow.Binding{ID: connID}},
		Nodes:   []workflow.Node{{ID: "note", Kind: workflow.NodeTransform, Config: out}},
		Edges:   []workflow.Edge{{From: "start", To: "note"}}}
}

// publishApp creates and publishes (through the page) a workflow on an
// app trigger, and returns it and its instant trigger's address.
func publishApp(t *testing.T, e *env, owner *browser, name string, g *workflow.Graph) (workflow.Workflow, string) {
	t.Helper()
	return publishAppIn(t, e, owner, e.acme, name, g)
}

// publishAppIn is publishApp in workspace ws.
func publishAppIn(t *testing.T, e *env, owner *browser, ws account.Workspace, name string, g *workflow.Graph) (workflow.Workflow, string) {
	t.Helper()
	ctx := context.Background()
	w, err := e.workflows.Create(ctx, ws, name, "", g, "")
	must(t, err)
	base := "/" + ws.Slug + "/workflows/" + w.ID
	wantRedirect(t, "publish "+name, owner.post(base+"/publish", nil), base+"/edit")
	st, ok, err := e.listener.State(ctx, w.ID)
	if err != nil || !ok || st.State != "subscribed" {
		t.Fatalf("%s after publishing: %+v %v %v", name, st, ok, err)
	}
	return w, st.Address
}

// deliver posts body with header to the server's path (or absolute URL).
func deliver(t *testing.T, e *env, to string, header http.Header, body []byte) (int, string) {
	t.Helper()
	if strings.HasPrefix(to, "/") {
		to = e.srv.URL + to
	}
	req, err := http.NewRequest(http.MethodPost, to, bytes.NewReader(body))
	must(t, err)
	req.Header = header.Clone()
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	must(t, err)
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func wantDelivered(t *testing.T, what string, status int, body string, want int) {
	t.Helper()
	if status != want {
		t.Fatalf("%s: got %d %.300s, want %d", what, status, body, want)
	}
}

// hexHMAC is the hex HMAC-SHA256 of msg under key.
func hexHMAC(key string, msg ...[]byte) string {
	m := hmac.New(sha256.New, []byte(key))
	for _, b := range msg {
		m.Write(b)
	}
	return hex.EncodeToString(m.Sum(nil))
}

// wantSecretHidden fails if secret is in the workflow's page, the API's
// trigger view or the log.
func wantSecretHidden(t *testing.T, e *env, owner *browser, workflowID, secret string) {
	t.Helper()
	if secret == "" {
		t.Fatal("no signing secret to look for")
	}
	page := owner.get("/acme/workflows/" + workflowID)
	wantStatus(t, "workflow page", page, http.StatusOK)
	view := owner.api("GET", "/api/v1/workflows/"+workflowID+"/trigger", "")
	wantStatus(t, "trigger view", view, http.StatusOK)
	for what, s := range map[string]string{"the workflow page": page.Body, "the API's trigger view": view.Body, "the log": e.log.String()} {
		if strings.Contains(s, secret) || strings.Contains(html.UnescapeString(s), secret) {
			t.Fatalf("the signing secret is in %s", what)
		}
	}
}

// fakeGitHub answers GitHub's repository webhooks API for acme/widgets.
type fakeGitHub struct {
	mu      sync.Mutex
	hooks   map[string]map[string]any // id -> config
	deleted []string
	auth    []string
	next    int
}

func (f *fakeGitHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	const hooks = "/repos/acme/widgets/hooks"
	switch {
	case r.Method == http.MethodPost && r.URL.Path == hooks:
		var in struct {
			Name   string         `json:"name"`
			Active bool           `json:"active"`
			Events []string       `json:"events"`
			Config map[string]any `json:"config"`
		}
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Name != "web" || len(in.Events) != 1 || in.Events[0] != "issues" {
			w.WriteHeader(http.StatusUnprocessableEntity)
			fmt.Fprint(w, `{"message":"Validation Failed"}`)
			return
		}
		f.next++
		id := strconv.Itoa(12345677 + f.next)
		if f.hooks == nil {
			f.hooks = map[string]map[string]any{}
		}
		f.hooks[id] = in.Config
		shown := map[string]any{"url": in.Config["url"], "content_type": in.Config["content_type"], "insecure_ssl": in.Config["insecure_ssl"]}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]any{"type": "Repository", "id": f.next + 12345677, "name": "web", "active": true,
			"events": in.Events, "config": shown})
	case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, hooks+"/"):
		id := strings.TrimPrefix(r.URL.Path, hooks+"/")
		if _, ok := f.hooks[id]; !ok {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"message":"Not Found"}`)
			return
		}
		delete(f.hooks, id)
		f.deleted = append(f.deleted, id)
		w.WriteHeader(http.StatusNoContent)
	default:
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"message":"Not Found"}`)
	}
}

// only is the one hook's id and config, failing otherwise.
func (f *fakeGitHub) only(t *testing.T) (string, map[string]any) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.hooks) != 1 {
		t.Fatalf("GitHub has %d hooks, want 1", len(f.hooks))
	}
	for id, c := range f.hooks {
		return id, c
	}
	return "", nil
}

// GitHub's new-issue trigger end to end: publishing creates a repository
// hook at (a fake of) GitHub's API with the workflow's address and a
// secret; an issues/opened delivery signed with it starts one run; the same
// delivery again, a forged one and a ping start none; deactivating deletes
// the hook.
func TestInstantAppsGitHubNewIssue(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		gh := &fakeGitHub{}
		srv := httptest.NewServer(gh)
		t.Cleanup(srv.Close)
		e.apps.route(t, "https://api.github.com", srv.URL)
		owner := e.signIn("owner@a.example")
		token := "gho_e2eAccessToken0123456789"
		c, err := e.connections.CreateWithCredential(ctx, e.acme, connection.New{AppKey: "github", Label: "GitHub", Status: connection.StatusActive,
			ExternalAccountID: "583231", ExternalAccountName: "octocat"},
			connection.Credential{OAuth: &connection.OAuthToken{AccessToken: token, TokenType: "bearer", Scope: "repo,admin:repo_hook,read:user"}}, connection.System)
		must(t, err)

		w, address := publishApp(t, e, owner, "New issues", appTriggerGraph(c.ID, "github", "new-issue", map[string]string{"owner": "acme", "repo": "widgets"}))
		if !strings.HasPrefix(address, e.srv.URL+"/webhooks/triggers/") {
			t.Fatalf("address %q is not the trigger's own", address)
		}
		hookID, cfg := gh.only(t)
		secret, _ := cfg["secret"].(string)
		if cfg["url"] != address || cfg["content_type"] != "json" || len(secret) < 16 {
			t.Fatalf("hook config: url %v (want %s), content_type %v, secret of %d characters", cfg["url"], address, cfg["content_type"], len(secret))
		}
		gh.mu.Lock()
		if gh.auth[0] != "Bearer "+token {
			t.Fatalf("GitHub got Authorization %q, want the connection's token", gh.auth[0])
		}
		gh.mu.Unlock()

		issue := []byte(`{"action":"opened","issue":{"id":1001,"number":7,"title":"Widgets wobble","user":{"login":"octocat"}},` +
			`"repository":{"id":42,"full_name":"acme/widgets"},"sender":{"login":"octocat"}}`)
		signed := func(event, guid string, body []byte, key string) http.Header {
			return http.Header{"X-Github-Event": {event}, "X-Github-Delivery": {guid},
				"X-Hub-Signature-256": {"sha256=" + hexHMAC(key, body)}, "User-Agent": {"GitHub-Hookshot/abc123"}}
		}
		h := signed("issues", "72d3162e-cc78-11e3-81ab-4c9367dc0958", issue, secret)
		st, body := deliver(t, e, address, h, issue)
		wantDelivered(t, "issues opened", st, body, http.StatusOK)
		var runs []appRun
		eventually(t, "one run", 10*time.Second, func() bool { runs = appRuns(t, e, w.ID); return len(runs) == 1 })
		if runs[0].dedup != "instant:github:new-issue:issue:1001:opened" {
			t.Fatalf("run dedup key %q", runs[0].dedup)
		}
		iss, _ := runs[0].payload["issue"].(map[string]any)
		if runs[0].payload["action"] != "opened" || iss["title"] != "Widgets wobble" {
			t.Fatalf("$trigger is not the issue event: %v", runs[0].payload)
		}

		st, body = deliver(t, e, address, h, issue)
		wantDelivered(t, "the same delivery again", st, body, http.StatusOK)
		forged := bytes.Replace(issue, []byte("Widgets wobble"), []byte("Widgets forged"), 1)
		st, body = deliver(t, e, address, h, forged)
		wantDelivered(t, "forged signature", st, body, http.StatusUnauthorized)
		st, body = deliver(t, e, address, signed("issues", "guid-2", forged, "not-the-secret"), forged)
		wantDelivered(t, "signed with another secret", st, body, http.StatusUnauthorized)
		ping := []byte(`{"zen":"Keep it logically awesome.","hook_id":` + hookID + `}`)
		st, body = deliver(t, e, address, signed("ping", "guid-ping", ping, secret), ping)
		wantDelivered(t, "ping", st, body, http.StatusOK)
		if runs = appRuns(t, e, w.ID); len(runs) != 1 {
			t.Fatalf("runs after a redelivery, a forgery and a ping: %d, want 1", len(runs))
		}
		wantSecretHidden(t, e, owner, w.ID, secret)

		wantRedirect(t, "deactivate", owner.post("/acme/workflows/"+w.ID+"/deactivate", nil), "/acme/workflows/"+w.ID)
		gh.mu.Lock()
		deleted, left := gh.deleted, len(gh.hooks)
		gh.mu.Unlock()
		if len(deleted) != 1 || deleted[0] != hookID || left != 0 {
			t.Fatalf("after deactivating: deleted %v, %d hooks left, want %s deleted", deleted, left, hookID)
		}
		if strings.Contains(e.log.String(), token) {
			t.Fatal("the GitHub token is in the log")
		}
	})
}

// fakeStripe answers Stripe's webhook endpoints API.
type fakeStripe struct {
	mu        sync.Mutex
	endpoints map[string]url.Values
	deleted   []string
	auth      []string
	secret    string
}

func (f *fakeStripe) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v1/webhook_endpoints":
		if err := r.ParseForm(); err != nil || r.PostForm.Get("url") == "" || len(r.PostForm["enabled_events[]"]) == 0 {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":{"type":"invalid_request_error","message":"Missing required param: url."}}`)
			return
		}
		id := fmt.Sprintf("we_1Mr5jULkdIwHu7ix%04d", len(f.endpoints)+len(f.deleted)+1)
		if f.endpoints == nil {
			f.endpoints = map[string]url.Values{}
		}
		f.endpoints[id] = r.PostForm
		_ = json.NewEncoder(w).Encode(map[string]any{"id": id, "object": "webhook_endpoint", "api_version": nil,
			"application": nil, "created": 1680122196, "description": r.PostForm.Get("description"),
			"enabled_events": r.PostForm["enabled_events[]"], "livemode": false, "metadata": map[string]any{},
			"secret": f.secret, "status": "enabled", "url": r.PostForm.Get("url")})
	case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, "/v1/webhook_endpoints/"):
		id := strings.TrimPrefix(r.URL.Path, "/v1/webhook_endpoints/")
		if _, ok := f.endpoints[id]; !ok {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"error":{"type":"invalid_request_error","message":"No such webhook endpoint"}}`)
			return
		}
		delete(f.endpoints, id)
		f.deleted = append(f.deleted, id)
		_ = json.NewEncoder(w).Encode(map[string]any{"id": id, "object": "webhook_endpoint", "deleted": true})
	default:
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"error":{"type":"invalid_request_error","message":"Unrecognized request URL"}}`)
	}
}

// Stripe's new-customer trigger end to end: publishing creates a webhook
// endpoint for customer.created whose whsec_ secret Stripe generated; a
// delivery signed with it starts one run; a stale signature is refused, a
// redelivery and another event type start nothing; deactivating deletes
// the endpoint.
func TestInstantAppsStripeNewCustomer(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		fs := &fakeStripe{secret: "whsec_e2eSigningSecret0123456789abcdef"}
		srv := httptest.NewServer(fs)
		t.Cleanup(srv.Close)
		e.apps.route(t, "https://api.stripe.com", srv.URL)
		owner := e.signIn("owner@a.example")
		key := "sk_test_e2eInstantStripeKey"
		c, err := e.connections.CreateWithCredential(ctx, e.acme, connection.New{AppKey: "stripe", Label: "Billing", Status: connection.StatusActive},
			connection.Credential{APIKey: key, Fields: map[string]string{"apiKey": key}}, connection.System)
		must(t, err)

		w, address := publishApp(t, e, owner, "New customers", appTriggerGraph(c.ID, "stripe", "new-customer", nil))
		fs.mu.Lock()
		if len(fs.endpoints) != 1 {
			t.Fatalf("Stripe has %d endpoints, want 1", len(fs.endpoints))
		}
		var weID string
		for id, form := range fs.endpoints {
			weID = id
			if form.Get("url") != address || strings.Join(form["enabled_events[]"], ",") != "customer.created" {
				t.Fatalf("endpoint %s: %v, want url %s for customer.created", id, form, address)
			}
		}
		if auth := fs.auth[0]; auth != "Bearer "+key && !strings.HasPrefix(auth, "Basic ") {
			t.Fatal("Stripe got no credential")
		}
		fs.mu.Unlock()

		sign := func(body []byte, at time.Time) http.Header {
			ts := strconv.FormatInt(at.Unix(), 10)
			return http.Header{"Stripe-Signature": {"t=" + ts + ",v1=" + hexHMAC(fs.secret, []byte(ts+"."), body) + ",v0=00"}}
		}
		event := func(id, typ string) []byte {
			return []byte(`{"id":"` + id + `","object":"event","api_version":"2024-06-20","created":1680122196,"type":"` + typ + `",` +
				`"data":{"object":{"id":"cus_NffrFeUfNV2Hib","object":"customer","email":"jenny.rosen@example.com","name":"Jenny Rosen"}},` +
				`"livemode":false,"pending_webhooks":1,"request":{"id":null,"idempotency_key":null}}`)
		}
		created := event("evt_1NG8Du2eZvKYlo2CUI79vXWy", "customer.created")
		st, body := deliver(t, e, address, sign(created, time.Now()), created)
		wantDelivered(t, "customer.created", st, body, http.StatusOK)
		var runs []appRun
		eventually(t, "one run", 10*time.Second, func() bool { runs = appRuns(t, e, w.ID); return len(runs) == 1 })
		if runs[0].dedup != "instant:stripe:new-customer:evt_1NG8Du2eZvKYlo2CUI79vXWy" ||
			runs[0].payload["email"] != "jenny.rosen@example.com" || runs[0].payload["event_type"] != "customer.created" {
			t.Fatalf("run: %s %v", runs[0].dedup, runs[0].payload)
		}

		stale := event("evt_1NG8Du2eZvKYlo2CStale000", "customer.created")
		st, body = deliver(t, e, address, sign(stale, time.Now().Add(-301*time.Second)), stale)
		wantDelivered(t, "a stale timestamp", st, body, http.StatusUnauthorized)
		st, body = deliver(t, e, address, sign(created, time.Now()), created)
		wantDelivered(t, "redelivery", st, body, http.StatusOK)
		other := event("evt_1NG8Du2eZvKYlo2COther000", "customer.updated")
		st, body = deliver(t, e, address, sign(other, time.Now()), other)
		wantDelivered(t, "customer.updated", st, body, http.StatusOK)
		st, body = deliver(t, e, address, http.Header{"Stripe-Signature": {"t=" + strconv.FormatInt(time.Now().Unix(), 10) + ",v1=" + hexHMAC("whsec_wrong", created)}}, created)
		wantDelivered(t, "wrong signature", st, body, http.StatusUnauthorized)
		if runs = appRuns(t, e, w.ID); len(runs) != 1 {
			t.Fatalf("runs after a stale, a repeated and another event: %d, want 1", len(runs))
		}
		wantSecretHidden(t, e, owner, w.ID, fs.secret)

		wantRedirect(t, "deactivate", owner.post("/acme/workflows/"+w.ID+"/deactivate", nil), "/acme/workflows/"+w.ID)
		fs.mu.Lock()
		deleted, left := fs.deleted, len(fs.endpoints)
		fs.mu.Unlock()
		if len(deleted) != 1 || deleted[0] != weID || left != 0 {
			t.Fatalf("after deactivating: deleted %v, %d left, want %s deleted", deleted, left, weID)
		}
	})
}

// Slack's new-message trigger end to end: events arrive at the app-wide
// address signed with the Slack app's signing secret and reach the
// workflow whose connection is the event's workspace (team id); the
// url_verification handshake is answered with its challenge; another
// team's event, a bot's message and a retry start nothing; a wrong
// signature is refused.
func TestInstantAppsSlackNewMessage(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		owner := e.signIn("owner@a.example")
		token := "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy"
		c, err := e.connections.CreateWithCredential(ctx, e.acme, connection.New{AppKey: "slack", Label: "Acme Slack", Status: connection.StatusActive,
			ExternalAccountID: "T0ACME1234", ExternalAccountName: "Acme"},
			connection.Credential{OAuth: &connection.OAuthToken{AccessToken: token, TokenType: "bot", Scope: "channels:history,chat:write"}}, connection.System)
		must(t, err)

		w, address := publishApp(t, e, owner, "Slack messages", appTriggerGraph(c.ID, "slack", "new-message", map[string]string{"channel": "C0GENERAL1"}))
		// Another agency's workflow on another Slack workspace, same channel id.
		otherConn, err := e.connections.CreateWithCredential(ctx, e.bravo, connection.New{AppKey: "slack", Label: "Bravo Slack", Status: connection.StatusActive,
			ExternalAccountID: "T0OTHER999", ExternalAccountName: "Bravo"},
			connection.Credential{OAuth: &connection.OAuthToken{AccessToken: "xoxb-2-other", TokenType: "bot"}}, connection.System)
		must(t, err)
		otherW, _ := publishAppIn(t, e, e.signIn("owner@b.example"), e.bravo, "Bravo messages",
			appTriggerGraph(otherConn.ID, "slack", "new-message", map[string]string{"channel": "C0GENERAL1"}))
		const to = "/webhooks/apps/slack"
		if address != e.srv.URL+to {
			t.Fatalf("Slack trigger's address %q, want the app-wide %s", address, e.srv.URL+to)
		}
		if page := html.UnescapeString(owner.get("/acme/workflows/" + w.ID).Body); !strings.Contains(page, address) {
			t.Fatalf("the workflow page does not show the app-wide address %s", address)
		}
		sign := func(body []byte, key string) http.Header {
			ts := strconv.FormatInt(time.Now().Unix(), 10)
			return http.Header{"X-Slack-Request-Timestamp": {ts}, "X-Slack-Signature": {"v0=" + hexHMAC(key, []byte("v0:"+ts+":"), body)}}
		}

		verify := []byte(`{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}`)
		st, body := deliver(t, e, to, sign(verify, testSlackSigningSecret), verify)
		wantDelivered(t, "url_verification", st, body, http.StatusOK)
		if body != "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" {
			t.Fatalf("url_verification answered %q, want the challenge", body)
		}

		callback := func(team, eventID, event string) []byte {
			return []byte(`{"token":"XXYYZZ","team_id":"` + team + `","api_app_id":"A0APP","type":"event_callback","event_id":"` + eventID +
				`","event_time":1700000000,"event":` + event + `}`)
		}
		msg := callback("T0ACME1234", "Ev0MSG0001", `{"type":"message","channel":"C0GENERAL1","user":"U0ALICE","text":"Hello world","ts":"1700000000.000100","channel_type":"channel"}`)
		h := sign(msg, testSlackSigningSecret)
		st, body = deliver(t, e, to, h, msg)
		wantDelivered(t, "message", st, body, http.StatusOK)
		var runs []appRun
		eventually(t, "one run", 10*time.Second, func() bool { runs = appRuns(t, e, w.ID); return len(runs) == 1 })
		if runs[0].dedup != "instant:slack:new-message:Ev0MSG0001" || runs[0].payload["text"] != "Hello world" || runs[0].payload["team_id"] != "T0ACME1234" {
			t.Fatalf("run: %s %v", runs[0].dedup, runs[0].payload)
		}

		others := []struct{ what, body string }{
			{"another team's message", string(callback("T0OTHER999", "Ev0MSG0002", `{"type":"message","channel":"C0GENERAL1","user":"U0BOB","text":"Not yours","ts":"1700000001.000100"}`))},
			{"an unknown team's message", string(callback("T0NOBODY00", "Ev0MSG0006", `{"type":"message","channel":"C0GENERAL1","user":"U0EVE","text":"Anyone?","ts":"1700000005.000100"}`))},
			{"a bot's message", string(callback("T0ACME1234", "Ev0MSG0003", `{"type":"message","subtype":"bot_message","bot_id":"B0BOT","channel":"C0GENERAL1","text":"beep","ts":"1700000002.000100"}`))},
			{"another channel's message", string(callback("T0ACME1234", "Ev0MSG0004", `{"type":"message","channel":"C0RANDOM01","user":"U0ALICE","text":"elsewhere","ts":"1700000003.000100"}`))},
		}
		for _, o := range others {
			st, body = deliver(t, e, to, sign([]byte(o.body), testSlackSigningSecret), []byte(o.body))
			wantDelivered(t, o.what, st, body, http.StatusOK)
		}
		retry := sign(msg, testSlackSigningSecret)
		retry.Set("X-Slack-Retry-Num", "1")
		retry.Set("X-Slack-Retry-Reason", "http_timeout")
		st, body = deliver(t, e, to, retry, msg)
		wantDelivered(t, "a retry", st, body, http.StatusOK)
		wrong := callback("T0ACME1234", "Ev0MSG0005", `{"type":"message","channel":"C0GENERAL1","user":"U0MALLORY","text":"forged","ts":"1700000004.000100"}`)
		st, body = deliver(t, e, to, sign(wrong, "not-the-signing-secret"), wrong)
		wantDelivered(t, "wrong signature", st, body, http.StatusUnauthorized)
		if runs = appRuns(t, e, w.ID); len(runs) != 1 {
			t.Fatalf("runs after other teams', bots', retried and forged events: %d, want 1", len(runs))
		}
		if other := appRuns(t, e, otherW.ID); len(other) != 1 || other[0].dedup != "instant:slack:new-message:Ev0MSG0002" {
			t.Fatalf("the other team's workflow: %v, want the one run of its team's message", other)
		}
		wantSecretHidden(t, e, owner, w.ID, testSlackSigningSecret)
		if strings.Contains(e.log.String(), token) {
			t.Fatal("the Slack token is in the log")
		}
	})
}
