package server_test

import (
	"context"
	"encoding/json"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"taskjuice/internal/account"
	"taskjuice/internal/authn"
	"taskjuice/internal/catalog"
	"taskjuice/internal/connection"
	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
	"taskjuice/internal/egress"
	"taskjuice/internal/engine"
	"taskjuice/internal/expr"
	"taskjuice/internal/llm"
	"taskjuice/internal/notify"
	"taskjuice/internal/sandbox"
	"taskjuice/internal/server"
	"taskjuice/internal/spend"
	"taskjuice/internal/trigger"
	"taskjuice/internal/vault"
	"taskjuice/internal/workflow"
)

const pw = "correct horse battery"

// env is one running server with two agencies in it:
//
//	A: owner@a, admin@a, member@a; workspaces acme and beta; client@acme
//	B: owner@b; workspace bravo
type env struct {
	t           *testing.T
	db          *db.DB
	accounts    *account.Service
	connections *connection.Service
	refresher   *connection.Refresher
	workflows   *workflow.Service
	engine      *engine.Engine
	notify      *notify.Service
	models      *llm.Service
	spend       *spend.Service
	sandbox     *sandbox.Provider
	poller      *trigger.Poller
	listener    *trigger.Listener
	// apps routes calls to real apps' API origins to local fakes.
	apps *appHosts
	// deliveries records the sandbox's webhook deliveries as sent.
	deliveries *deliveryTap
	server     *server.Server
	srv        *httptest.Server
	// seen holds every response TaskJuice gave in the test (headers and
	// body), for the leak check.
	seenMu sync.Mutex
	seen   []string
	log    *lockedWriter
	acme   account.Workspace
	bravo  account.Workspace
}

func setup(t *testing.T, d *db.DB) *env {
	t.Helper()
	ctx := context.Background()
	logs := &lockedWriter{b: &strings.Builder{}}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	accounts := account.NewService(d)
	e := &env{t: t, db: d, accounts: accounts, log: logs}
	// The handler needs the server's own URL (OAuth redirects), known only
	// once it listens.
	var handler http.Handler
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	t.Cleanup(e.srv.Close)
	e.apps = &appHosts{}
	opts := fullOptionsWith(t, d, accounts, log, e.srv.URL, e.apps)
	e.connections, e.refresher, e.workflows, e.engine, e.notify = opts.Connections, opts.Refresher, opts.Workflows, opts.Engine, opts.Notify
	e.models, e.spend, e.poller, e.listener = opts.Models, opts.Spend, opts.Poller, opts.Listener
	e.deliveries = &deliveryTap{}
	e.sandbox = newSandbox(t, e.srv.URL, log, e.deliveries)
	opts.Sandbox = e.sandbox.Handler()
	t.Cleanup(e.checkNoSecretLeaked)
	s, err := server.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	handler, e.server = s.Handler(), s

	a, _, err := accounts.CreateAccount(ctx, "Agency A", account.NewUser{Email: "owner@a.example", Name: "Olive", Password: pw})
	must(t, err)
	_, err = accounts.CreateStaff(ctx, a.ID, account.NewUser{Email: "admin@a.example", Name: "Adam", Password: pw}, account.RoleAdmin)
	must(t, err)
	_, err = accounts.CreateStaff(ctx, a.ID, account.NewUser{Email: "member@a.example", Name: "Mia", Password: pw}, account.RoleMember)
	must(t, err)
	e.acme, err = accounts.CreateWorkspaceForAccount(ctx, a.ID, "Acme Corp", "acme")
	must(t, err)
	_, err = accounts.CreateWorkspaceForAccount(ctx, a.ID, "Beta", "beta")
	must(t, err)
	_, err = accounts.CreateClient(ctx, e.acme.ID, account.NewUser{Email: "client@acme.example", Name: "Cleo", Password: pw})
	must(t, err)
	b, _, err := accounts.CreateAccount(ctx, "Agency B", account.NewUser{Email: "owner@b.example", Name: "Bob", Password: pw})
	must(t, err)
	e.bravo, err = accounts.CreateWorkspaceForAccount(ctx, b.ID, "Bravo", "bravo")
	must(t, err)
	return e
}

// fullOptions wires every part of the server the way serve does, against
// the test's database.
func fullOptions(t *testing.T, d *db.DB, accounts *account.Service, log *slog.Logger, baseURL string) server.Options {
	t.Helper()
	return fullOptionsWith(t, d, accounts, log, baseURL, nil)
}

// fullOptionsWith is fullOptions whose instant triggers call the real
// apps' APIs through hosts (nil: the default guarded client), and whose
// catalog has a Slack signing secret.
func fullOptionsWith(t *testing.T, d *db.DB, accounts *account.Service, log *slog.Logger, baseURL string, hosts *appHosts) server.Options {
	t.Helper()
	getenv := func(k string) string {
		if k == catalog.SigningSecretEnv("slack") {
			return testSlackSigningSecret
		}
		return ""
	}
	cat, err := catalog.Load(catalog.Options{Getenv: getenv, SandboxURL: baseURL + "/sandbox"})
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := vault.LoadKey("", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	conns := connection.NewService(d, vault.NewKeyring(key))
	accounts.UseVault(vault.NewKeyring(key))
	metrics := server.NewMetrics()
	refresher := connection.NewRefresher(conns, connection.CatalogOAuth(cat, baseURL+"/oauth/callback"), connection.RefresherOptions{Log: log, Outcome: metrics.RefreshOutcome})
	workflows := workflow.NewService(d)
	// HTTP steps in these tests call servers on loopback: opt in, as an
	// operator would with --http-allow-private. Connections keep the
	// default guard: their sandbox is the catalog's own endpoint.
	steps := egress.Client(egress.Policy{AllowPrivate: true}, time.Minute)
	notifier := notify.NewService(d, cat)
	notifier.FailureAlerts(vault.NewStore(d, vault.NewKeyring(key)), steps, server.ChatPoster(cat, conns, connection.NewAppClient(conns, refresher, cat, nil)))
	eng := engine.New(d, workflows, engine.Builtins(cat, connection.NewAppClient(conns, refresher, cat, nil), steps), engine.Expressions(expr.Limits{}),
		engine.Options{Log: log, Observer: metrics, Failures: notifier})
	return server.Options{Metrics: metrics, DB: d, Accounts: accounts, Connections: conns, Refresher: refresher, Catalog: cat,
		Workflows: workflows, Engine: eng, Log: log, BaseURL: baseURL,
		Webhooks:  trigger.New(d, vault.NewKeyring(key), eng, workflows, trigger.Options{Log: log, Responder: eng}),
		Scheduler: trigger.NewScheduler(d, eng, trigger.SchedulerOptions{Log: log}),
		Poller:    trigger.NewPoller(d, eng, connection.NewAppClient(conns, refresher, cat, nil), conns, cat, trigger.PollerOptions{Log: log}),
		Listener: trigger.NewListener(d, vault.NewKeyring(key), eng, connection.NewAppClient(conns, refresher, cat, hosts.client()), cat,
			trigger.ListenerOptions{BaseURL: baseURL, Accounts: conns.ExternalAccountOf, Log: log}),
		Notify: notifier,
		Models: llm.NewService(d, vault.NewKeyring(key), llm.Options{}),
		Spend:  spend.NewService(d, spend.Options{Alerts: notifier})}
}

// newSandbox is the built-in sandbox provider as serve mounts it, with
// TaskJuice registered as a public (PKCE) client.
func newSandbox(t *testing.T, baseURL string, log *slog.Logger, tap *deliveryTap) *sandbox.Provider {
	t.Helper()
	p, err := sandbox.New(sandbox.Options{
		DeliveryClient:  &http.Client{Transport: tap, Timeout: 30 * time.Second},
		DeliveryBackoff: 200 * time.Millisecond,
		BaseURL:         baseURL + "/sandbox",
		Clients: []sandbox.Client{
			{ID: catalog.SandboxClientID("sandbox-chat"), Name: "Sandbox Chat", RedirectURIs: []string{baseURL + "/oauth/callback"}},
			{ID: catalog.SandboxClientID("sandbox-inbox"), Name: "Sandbox Inbox", RedirectURIs: []string{baseURL + "/oauth/callback"}},
		},
		Log: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// browser is a person with a cookie jar who does not follow redirects, so
// tests can see where they are sent.
type browser struct {
	e *env
	c *http.Client
}

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{e: e, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (e *env) signIn(email string) *browser {
	e.t.Helper()
	b := e.browser()
	res := b.post("/signin", url.Values{"email": {email}, "password": {pw}})
	if res.StatusCode != http.StatusSeeOther {
		e.t.Fatalf("sign in %s: got %d, want 303", email, res.StatusCode)
	}
	return b
}

type response struct {
	*http.Response
	Body string
}

func (b *browser) do(req *http.Request) response {
	b.e.t.Helper()
	res, err := b.c.Do(req)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	// The sandbox is the third-party app: its token endpoint hands out
	// tokens by design. Everything else is TaskJuice's own output.
	if !strings.HasPrefix(req.URL.Path, "/sandbox/") {
		var hdr strings.Builder
		_ = res.Header.Write(&hdr)
		b.e.seenMu.Lock()
		b.e.seen = append(b.e.seen, req.Method+" "+req.URL.String()+"\n"+hdr.String()+"\n"+string(body))
		b.e.seenMu.Unlock()
	}
	return response{Response: res, Body: string(body)}
}

// secretPattern matches the credentials tests create: sandbox access and
// refresh tokens, app API keys, and the sandbox's model key.
var secretPattern = regexp.MustCompile(`sbx[ar]_[A-Za-z0-9_-]{8,}|sk_(test|live)_[A-Za-z0-9]{4,}|sk-sandbox-[A-Za-z0-9_-]{8,}`)

// checkNoSecretLeaked fails the test if any response TaskJuice gave, or any
// log line it wrote, carries a credential.
func (e *env) checkNoSecretLeaked() {
	e.seenMu.Lock()
	defer e.seenMu.Unlock()
	for _, out := range append(e.seen, e.log.String()) {
		if m := secretPattern.FindString(out); m != "" {
			first, _, _ := strings.Cut(out, "\n")
			e.t.Errorf("a credential (%s…) leaked into: %s", m[:8], first)
		}
	}
}

func (b *browser) get(path string) response {
	b.e.t.Helper()
	req, _ := http.NewRequest("GET", b.e.srv.URL+path, nil)
	return b.do(req)
}

func (b *browser) post(path string, form url.Values) response {
	b.e.t.Helper()
	req, _ := http.NewRequest("POST", b.e.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

func (b *browser) api(method, path, body string, header ...string) response {
	b.e.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, b.e.srv.URL+path, r)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return b.do(req)
}

func wantStatus(t *testing.T, what string, r response, want int) {
	t.Helper()
	if r.StatusCode != want {
		t.Fatalf("%s: got status %d, want %d; body: %.300s", what, r.StatusCode, want, r.Body)
	}
}

func wantRedirect(t *testing.T, what string, r response, to string) {
	t.Helper()
	if r.StatusCode < 300 || r.StatusCode > 399 || r.Header.Get("Location") != to {
		t.Fatalf("%s: got %d to %q, want a redirect to %q", what, r.StatusCode, r.Header.Get("Location"), to)
	}
}

func apiError(t *testing.T, r response) (code, message string) {
	t.Helper()
	var body struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal([]byte(r.Body), &body); err != nil || body.Error.Message == "" {
		t.Fatalf("error body %q is not the error shape: %v", r.Body, err)
	}
	return body.Error.Code, body.Error.Message
}

// lockedWriter lets the server's concurrent handlers log into one buffer.
type lockedWriter struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// String is what was written so far; handlers still running (a live
// stream at cleanup) may be writing meanwhile.
func (w *lockedWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func each(t *testing.T, fn func(t *testing.T, e *env)) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) { fn(t, setup(t, d)) })
}

func TestSignInCookie(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		b := e.browser()
		res := b.post("/signin", url.Values{"email": {"owner@a.example"}, "password": {pw}})
		wantRedirect(t, "staff sign-in", res, "/dashboard")
		var c *http.Cookie
		for _, ck := range res.Cookies() {
			if ck.Name == authn.SessionCookie {
				c = ck
			}
		}
		if c == nil || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Secure {
			t.Fatalf("session cookie: got %+v, want HttpOnly, SameSite=Lax, not Secure over http", c)
		}
		page := b.get("/dashboard")
		wantStatus(t, "dashboard", page, 200)
		if !strings.Contains(page.Body, "Acme Corp") || strings.Contains(page.Body, "Bravo") {
			t.Fatal("dashboard must list the account's workspaces and no other's")
		}
		wantRedirect(t, "sign out", b.post("/signout", nil), "/signin")
		wantRedirect(t, "dashboard after sign out", b.get("/dashboard"), "/signin?next=%2Fdashboard")

		bad := e.browser().post("/signin", url.Values{"email": {"owner@a.example"}, "password": {"nope"}})
		wantStatus(t, "wrong password", bad, 401)
		if !strings.Contains(bad.Body, account.MsgBadCredentials) {
			t.Fatalf("wrong password page lacks %q", account.MsgBadCredentials)
		}
	})
}

func TestSignInLimit(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		b := e.browser()
		var res response
		// Failures past the free few start a back-off that grows; keep
		// failing until one answer is the back-off, whatever the machine's
		// speed.
		for i := 0; ; i++ {
			if i > account.FreePairFailures+12 {
				t.Fatalf("no back-off after %d wrong passwords", i)
			}
			res = b.post("/signin", url.Values{"email": {"member@a.example"}, "password": {"nope"}})
			if res.StatusCode != 401 {
				break
			}
		}
		wantStatus(t, "backed off", res, 429)
		if !strings.Contains(res.Body, "Too many failed sign-in attempts") {
			t.Fatal("back-off page does not say why")
		}
		if secs, err := strconv.Atoi(res.Header.Get("Retry-After")); err != nil || secs < 1 {
			t.Fatalf("Retry-After %q, want whole seconds", res.Header.Get("Retry-After"))
		}
		// Someone else at the same address is not slowed down.
		wantRedirect(t, "another person signs in", e.browser().post("/signin", url.Values{"email": {"admin@a.example"}, "password": {pw}}), "/dashboard")
	})
}

func TestMemberCannotCreateWorkspace(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		member := e.signIn("member@a.example")
		wantStatus(t, "member creates workspace (page)", member.post("/dashboard/workspaces", url.Values{"name": {"New"}, "slug": {"new-one"}}), 403)
		res := member.api("POST", "/api/v1/workspaces", `{"name":"New","slug":"new-one"}`)
		wantStatus(t, "member creates workspace (api)", res, 403)
		if _, msg := apiError(t, res); !strings.Contains(msg, "admins") {
			t.Fatalf("403 message %q does not say who can", msg)
		}
		if _, err := e.accounts.WorkspaceBySlug(context.Background(), mustP(t, e, "owner@a.example"), "new-one"); err == nil {
			t.Fatal("workspace created despite 403")
		}
		wantStatus(t, "member on account settings", member.get("/settings/account"), 403)
		if !strings.Contains(member.get("/settings/account").Body, "403 Tenant admin required") {
			t.Fatal(`account settings 403 lacks "403 Tenant admin required"`)
		}
	})
}

func mustP(t *testing.T, e *env, email string) account.Principal {
	t.Helper()
	p, err := e.accounts.PrincipalByEmail(context.Background(), email)
	must(t, err)
	return p
}

func TestCreateWorkspaceFromDashboard(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		admin := e.signIn("admin@a.example")
		res := admin.post("/dashboard/workspaces", url.Values{"name": {"Gamma Ltd"}, "slug": {"gamma"}})
		wantRedirect(t, "create", res, "/gamma/")
		page := admin.get("/gamma/")
		wantStatus(t, "new workspace", page, 200)
		if !strings.Contains(page.Body, "Workspace created") {
			t.Fatal(`no "Workspace created" after creating`)
		}
		if strings.Contains(admin.get("/gamma/").Body, "Workspace created") {
			t.Fatal("flash shown twice")
		}

		taken := wantKept(t, admin, "taken slug", admin.post("/dashboard/workspaces", url.Values{"name": {"Another"}, "slug": {"acme"}}), "/dashboard")
		if !strings.Contains(taken.Body, "This slug is already taken") || !strings.Contains(taken.Body, `value="Another"`) {
			t.Fatal("taken slug: form must show the message and keep the input")
		}
		bad := wantKept(t, admin, "malformed slug", admin.post("/dashboard/workspaces", url.Values{"name": {""}, "slug": {"-Bad"}}), "/dashboard")
		if !strings.Contains(bad.Body, "Slug must be 2–50 characters") || !strings.Contains(bad.Body, account.MsgNameInvalid) {
			t.Fatal("malformed input: both messages must show")
		}

		for slug, want := range map[string]string{"acme": "This slug is already taken", "zeta": "Available", "Z": account.MsgSlugInvalid} {
			r := admin.api("GET", "/api/v1/workspaces/slug-availability?slug="+slug, "")
			wantStatus(t, "slug availability", r, 200)
			var got struct {
				Available bool
				Message   string
			}
			must(t, json.Unmarshal([]byte(r.Body), &got))
			if got.Message != want || got.Available != (want == "Available") {
				t.Fatalf("availability of %q: got %+v, want %q", slug, got, want)
			}
		}
	})
}

func TestIsolationAcrossAccounts(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ownerB := e.signIn("owner@b.example")
		for _, p := range []string{"/acme/", "/acme/workflows", "/acme/connections", "/acme/monitoring/workflow-runs", "/acme/workspace/members"} {
			r := ownerB.get(p)
			wantStatus(t, "account B on "+p, r, 404)
			if strings.Contains(r.Body, "Acme Corp") {
				t.Fatalf("account B's 404 on %s names A's workspace", p)
			}
		}
		wantStatus(t, "account B api workspace", ownerB.api("GET", "/api/v1/workspaces/acme", ""), 404)
		wantStatus(t, "account B api members", ownerB.api("GET", "/api/v1/workspaces/acme/members", ""), 404)
		r := ownerB.api("GET", "/api/v1/workspaces", "")
		if strings.Contains(r.Body, "acme") || !strings.Contains(r.Body, "bravo") {
			t.Fatalf("account B lists: %s", r.Body)
		}
		// Account A's staff see their own.
		wantStatus(t, "member on own workspace", e.signIn("member@a.example").get("/acme/workspace/members"), 200)
	})
}

func TestClientAndStaffSurfaces(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		client := e.browser()
		wantRedirect(t, "client sign-in", client.post("/signin", url.Values{"email": {"client@acme.example"}, "password": {pw}}), "/portal")
		for _, p := range []string{"/dashboard", "/acme/", "/acme/workflows", "/beta/connections", "/settings/api-tokens", "/settings/account"} {
			wantRedirect(t, "client on "+p, client.get(p), "/portal")
		}
		wantRedirect(t, "client posts to a staff route", client.post("/dashboard/workspaces", url.Values{"name": {"X"}, "slug": {"xx"}}), "/portal")
		portal := client.get("/portal")
		wantStatus(t, "portal", portal, 200)
		if !strings.Contains(portal.Body, "Acme Corp") || strings.Contains(portal.Body, "Beta") {
			t.Fatal("portal must show the client's workspace only")
		}
		if strings.Contains(portal.Body, `href="/dashboard"`) {
			t.Fatal("portal links to a staff page")
		}
		// A client's sign-in with a staff next= still lands on the portal.
		c2 := e.browser()
		wantRedirect(t, "client next=staff", c2.post("/signin", url.Values{"email": {"client@acme.example"}, "password": {pw}, "next": {"/dashboard"}}), "/portal")

		staff := e.signIn("owner@a.example")
		wantRedirect(t, "staff on /portal", staff.get("/portal"), "/dashboard")
		wantRedirect(t, "anonymous on /portal", e.browser().get("/portal"), "/signin?next=%2Fportal")
	})
}

func TestCrossOriginPostRefused(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		owner := e.signIn("owner@a.example")
		form := url.Values{"name": {"Evil"}, "slug": {"evil"}}
		req, _ := http.NewRequest("POST", e.srv.URL+"/dashboard/workspaces", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", "https://evil.example")
		wantStatus(t, "cross-origin form post", owner.do(req), 403)

		req, _ = http.NewRequest("POST", e.srv.URL+"/api/v1/workspaces", strings.NewReader(`{"name":"Evil","slug":"evil"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		res := owner.do(req)
		wantStatus(t, "cross-site api post", res, 403)
		if code, _ := apiError(t, res); code != "cross_origin" {
			t.Fatalf("cross-site api code: got %q", code)
		}
		req, _ = http.NewRequest("POST", e.srv.URL+"/signout", nil)
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		wantStatus(t, "cross-site sign-out", owner.do(req), 403)

		if _, err := e.accounts.WorkspaceBySlug(context.Background(), mustP(t, e, "owner@a.example"), "evil"); err == nil {
			t.Fatal("cross-origin post created a workspace")
		}
		// The same post from our own origin works.
		req, _ = http.NewRequest("POST", e.srv.URL+"/dashboard/workspaces", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", e.srv.URL)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		wantRedirect(t, "same-origin post", owner.do(req), "/evil/")
	})
}

func TestAPITokens(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		owner := e.signIn("owner@a.example")
		page := owner.post("/settings/api-tokens", url.Values{"name": {"Deploy"}})
		wantStatus(t, "create token", page, 200)
		i := strings.Index(page.Body, account.APITokenPrefix)
		if i < 0 {
			t.Fatal("token secret not shown after creating")
		}
		secret := page.Body[i : i+strings.IndexAny(page.Body[i:], "<\n \"")]

		bearer := e.browser()
		me := bearer.api("GET", "/api/v1/me", "", "Authorization", "Bearer "+secret)
		wantStatus(t, "api with token", me, 200)
		if !strings.Contains(me.Body, "owner@a.example") {
			t.Fatalf("me: %s", me.Body)
		}
		if strings.Contains(owner.get("/settings/api-tokens").Body, secret) {
			t.Fatal("token secret shown again after creation")
		}

		list := owner.api("GET", "/api/v1/api-tokens", "")
		var toks struct{ Tokens []account.APIToken }
		must(t, json.Unmarshal([]byte(list.Body), &toks))
		if len(toks.Tokens) != 1 {
			t.Fatalf("tokens: got %d, want 1", len(toks.Tokens))
		}
		// Another account cannot revoke it.
		wantStatus(t, "account B revokes", e.signIn("owner@b.example").api("DELETE", "/api/v1/api-tokens/"+toks.Tokens[0].ID, ""), 404)
		wantRedirect(t, "revoke from page", owner.post("/settings/api-tokens/"+toks.Tokens[0].ID+"/revoke", nil), "/settings/api-tokens")

		res := bearer.api("GET", "/api/v1/me", "", "Authorization", "Bearer "+secret)
		wantStatus(t, "revoked token", res, 401)
		if _, msg := apiError(t, res); !strings.Contains(msg, "revoked") {
			t.Fatalf("revoked token message: %q", msg)
		}
		wantStatus(t, "no credential", e.browser().api("GET", "/api/v1/workspaces", ""), 401)
		wantStatus(t, "malformed header", e.browser().api("GET", "/api/v1/me", "", "Authorization", "Token abc"), 401)

		// Created by the API too, and the secret never shows in the list.
		created := owner.api("POST", "/api/v1/api-tokens", `{"name":"Script"}`)
		wantStatus(t, "api create token", created, 201)
		var ct struct{ Token string }
		must(t, json.Unmarshal([]byte(created.Body), &ct))
		if strings.Contains(owner.api("GET", "/api/v1/api-tokens", "").Body, ct.Token) {
			t.Fatal("token secret in token list")
		}
		if strings.Contains(e.log.String(), ct.Token) || strings.Contains(e.log.String(), secret) {
			t.Fatal("token secret in the log")
		}
	})
}

func TestBadJSON(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		owner := e.signIn("owner@a.example")
		tests := []struct {
			name, body string
			header     []string
			status     int
			code       string
		}{
			{"malformed", `{"name": "X", "slug":`, nil, 400, "malformed_json"},
			{"not an object", `["x"]`, nil, 400, "malformed_json"},
			{"wrong type", `{"name": 5, "slug": "five"}`, nil, 400, "wrong_type"},
			{"unknown field", `{"name": "X", "slug": "xx", "owner": "me"}`, nil, 400, "unknown_field"},
			{"two objects", `{"name": "X", "slug": "xx"} {}`, nil, 400, "malformed_json"},
			{"empty", ``, []string{"Content-Type", "application/json"}, 400, "empty_body"},
			{"wrong content type", `name=x`, []string{"Content-Type", "text/plain"}, 400, "unsupported_media_type"},
			{"oversized", `{"name": "` + strings.Repeat("x", 2<<20) + `", "slug": "big"}`, nil, 413, "body_too_large"},
			{"taken slug", `{"name": "Acme 2", "slug": "acme"}`, nil, 409, "slug_taken"},
			{"malformed slug", `{"name": "Bad", "slug": "Bad Slug"}`, nil, 422, "invalid"},
		}
		for _, tt := range tests {
			res := owner.api("POST", "/api/v1/workspaces", tt.body, tt.header...)
			wantStatus(t, tt.name, res, tt.status)
			code, msg := apiError(t, res)
			if code != tt.code || len(msg) < 10 {
				t.Errorf("%s: got code %q message %q, want code %q and a message", tt.name, code, msg, tt.code)
			}
		}
		res := owner.api("POST", "/api/v1/workspaces", `{"name": "", "slug": "x"}`)
		var body struct {
			Error struct{ Fields map[string]string }
		}
		must(t, json.Unmarshal([]byte(res.Body), &body))
		if body.Error.Fields["name"] != account.MsgNameInvalid || body.Error.Fields["slug"] != account.MsgSlugInvalid {
			t.Fatalf("field errors: got %+v", body.Error.Fields)
		}
		// Nothing half-written: only the three workspaces of setup exist.
		var n int
		must(t, e.db.Read().QueryRowContext(context.Background(), `SELECT count(*) FROM workspaces`).Scan(&n))
		if n != 3 {
			t.Fatalf("workspaces after bad requests: got %d, want 3", n)
		}
		wantStatus(t, "unknown api path", owner.api("GET", "/api/v1/nope", ""), 404)
		ok := owner.api("POST", "/api/v1/workspaces", `{"name": "Delta", "slug": "delta"}`)
		wantStatus(t, "valid create", ok, 201)
	})
}

func TestHealthReadyMetrics(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		b := e.browser()
		wantStatus(t, "healthz", b.get("/healthz"), 200)
		page := b.get("/signin")
		for h, want := range map[string]string{"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff"} {
			if got := page.Header.Get(h); got != want {
				t.Fatalf("%s: got %q, want %q", h, got, want)
			}
		}
		if csp := page.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
			t.Fatalf("Content-Security-Policy: got %q", csp)
		}
		wantStatus(t, "readyz", b.get("/readyz"), 200)
		b.get("/signin")
		m := b.get("/metrics")
		wantStatus(t, "metrics", m, 200)
		if !strings.Contains(m.Body, `taskjuice_http_requests_total{code="200",method="GET",route="GET /signin"}`) {
			t.Fatalf("metrics lack the sign-in request:\n%.2000s", m.Body)
		}
	})
}

func TestReadyzFailsWithoutDatabase(t *testing.T) {
	d := dbtest.SQLite(t)
	accounts := account.NewService(d)
	s, err := server.New(fullOptions(t, d, accounts, slog.New(slog.DiscardHandler), "http://127.0.0.1:1"))
	must(t, err)
	d.Close()
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != 503 {
		t.Fatalf("readyz with closed database: got %d, want 503", rec.Code)
	}
}

func TestOpenAPIDocumentServed(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		r := e.browser().get("/api/v1/openapi.json")
		wantStatus(t, "openapi", r, 200)
		var doc struct {
			OpenAPI string `json:"openapi"`
		}
		must(t, json.Unmarshal([]byte(r.Body), &doc))
		if !strings.HasPrefix(doc.OpenAPI, "3.") {
			t.Fatalf("openapi version: got %q", doc.OpenAPI)
		}
	})
}

// wantSentBack checks a refused form post the way a browser sees it: a
// redirect back to the page the form was on (post/redirect/get), where the
// refusal shows once as an error holding msg. It returns that page.
func wantSentBack(t *testing.T, b *browser, what string, r response, to, msg string) response {
	t.Helper()
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != to {
		t.Fatalf("%s: got %d to %q, want a redirect to %q; body: %.300s", what, r.StatusCode, r.Header.Get("Location"), to, r.Body)
	}
	page := b.get(to)
	wantStatus(t, what+": the page it went back to", page, http.StatusOK)
	if !strings.Contains(page.Body, `<div class="alert alert-error" role="alert">`+html.EscapeString(msg)) {
		t.Fatalf("%s: the page it went back to lacks the error %q: %.2000s", what, msg, page.Body)
	}
	const alert = `<div class="alert alert-error" role="alert">`
	if again := b.get(to); strings.Count(again.Body, alert+html.EscapeString(msg)) >= strings.Count(page.Body, alert+html.EscapeString(msg)) {
		t.Fatalf("%s: the error shows again on reload", what)
	}
	return page
}

// wantKept checks a refused form the way a browser sees it: a redirect
// back to the page the form is on (post/redirect/get), which shows the
// form again with what was typed and why it was refused, once. It returns
// that page.
func wantKept(t *testing.T, b *browser, what string, r response, to string) response {
	t.Helper()
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != to {
		t.Fatalf("%s: got %d to %q, want a redirect to %q; body: %.300s", what, r.StatusCode, r.Header.Get("Location"), to, r.Body)
	}
	page := b.get(to)
	wantStatus(t, what+": the page it went back to", page, http.StatusOK)
	return page
}

// deliveryTap is the sandbox's webhook transport: it records each delivery
// (headers and body) as sent, then sends it.
type deliveryTap struct {
	mu   sync.Mutex
	sent []recordedDelivery
}

type recordedDelivery struct {
	URL    string
	Header http.Header
	Body   []byte
}

func (d *deliveryTap) RoundTrip(r *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	r.Body.Close()
	d.mu.Lock()
	d.sent = append(d.sent, recordedDelivery{URL: r.URL.String(), Header: r.Header.Clone(), Body: body})
	d.mu.Unlock()
	r2 := r.Clone(r.Context())
	r2.Body = io.NopCloser(strings.NewReader(string(body)))
	return http.DefaultTransport.RoundTrip(r2)
}

func (d *deliveryTap) Sent() []recordedDelivery {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]recordedDelivery(nil), d.sent...)
}
