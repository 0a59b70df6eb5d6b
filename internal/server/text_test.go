package server_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"taskjuice/internal/account"
	"taskjuice/internal/api"
	"taskjuice/internal/apperr"
	"taskjuice/internal/textcheck"
	"taskjuice/internal/web"
	"taskjuice/internal/workflow"
)

// sandboxRoutes are the built-in sandbox provider's routes, served under
// /sandbox (its own mux is not exported).
var sandboxRoutes = []string{
	"GET /sandbox/oauth/authorize", "POST /sandbox/oauth/authorize", "POST /sandbox/oauth/token",
	"POST /sandbox/oauth/revoke", "GET /sandbox/api/me", "GET /sandbox/api/channels",
	"GET /sandbox/api/channels/{channel}/messages", "POST /sandbox/api/channels/{channel}/messages",
	"GET /sandbox/v1/models/{model}", "POST /sandbox/v1/chat/completions", "POST /sandbox/admin/revoke",
}

// everyRoute walks the route tables of the pages and the API, and adds
// what the server mounts itself.
func everyRoute(t *testing.T) []string {
	t.Helper()
	pages, err := web.New(web.Deps{Log: slog.New(slog.DiscardHandler)})
	must(t, err)
	routes := pages.Routes()
	for _, r := range api.New(api.Deps{}).Routes() {
		routes = append(routes, r.Method+" "+r.Path)
	}
	routes = append(routes, "/api/", "GET /healthz", "GET /readyz", "GET /metrics", "/webhooks/{token}")
	routes = append(routes, sandboxRoutes...)
	if len(routes) < 100 {
		t.Fatalf("route tables: got %d routes, want the whole surface", len(routes))
	}
	return routes
}

// textFixtures are real records, so requests reach as deep into the
// handlers as they can: ids by what the path segment before the wildcard
// names.
type textFixtures struct {
	workflow, version, connection, run, token, webhook string
}

func (e *env) textFixtures(t *testing.T) textFixtures {
	t.Helper()
	ctx := context.Background()
	var f textFixtures
	g, err := workflow.ParseGraph([]byte(`{"schema":1,"trigger":{"id":"start","kind":"manual"},
		"nodes":[{"id":"wait","kind":"approval","config":{"message":"Go?"}}],"edges":[{"from":"start","to":"wait"}]}`))
	must(t, err)
	w, err := e.workflows.Create(ctx, e.acme, "Approvals", "", &g, "")
	must(t, err)
	v, err := e.workflows.Publish(ctx, e.acme, w.ID, "", workflow.Checks{})
	must(t, err)
	f.workflow, f.version = w.ID, v.ID
	f.run, err = e.engine.StartRun(ctx, w.ID, json.RawMessage(`{}`), "manual", "")
	must(t, err)

	hg, err := workflow.ParseGraph([]byte(`{"schema":1,"trigger":{"id":"start","kind":"webhook","config":{"auth":"none"}},
		"nodes":[{"id":"wait","kind":"approval","config":{"message":"Go?"}}],"edges":[{"from":"start","to":"wait"}]}`))
	must(t, err)
	hw, err := e.workflows.Create(ctx, e.acme, "Hook", "", &hg, "")
	must(t, err)
	_, err = e.workflows.Publish(ctx, e.acme, hw.ID, "", workflow.Checks{})
	must(t, err)
	owner := e.signIn("owner@a.example")
	page := owner.get("/acme/workflows/" + hw.ID)
	wantStatus(t, "webhook workflow page", page, 200)
	m := regexp.MustCompile(`/webhooks/([A-Za-z0-9_-]+)`).FindStringSubmatch(page.Body)
	if m == nil {
		t.Fatal("webhook workflow page shows no webhook URL")
	}
	f.webhook = m[1]

	res := owner.api("POST", "/api/v1/workspaces/acme/connections", `{"app":"stripe","label":"Stripe","fields":{"apiKey":"sk_test_TEXTCHECK1"}}`)
	wantStatus(t, "create connection", res, 201)
	var c struct{ ID string }
	must(t, json.Unmarshal([]byte(res.Body), &c))
	f.connection = c.ID
	res = owner.api("POST", "/api/v1/api-tokens", `{"name":"ci"}`)
	wantStatus(t, "create token", res, 201)
	var tok struct{ APIToken struct{ ID string } }
	must(t, json.Unmarshal([]byte(res.Body), &tok))
	f.token = tok.APIToken.ID
	return f
}

// value is a good value for a wildcard, by its name and the segment before
// it.
func (f textFixtures) value(name, before string) string {
	switch name {
	case "workspaceSlug", "slug":
		return "acme"
	case "workflowId":
		return f.workflow
	case "runId":
		return f.run
	case "version":
		return f.version
	case "node":
		return "wait"
	case "action":
		return "cancel"
	case "file":
		return "app.css"
	case "channel":
		return "general"
	case "model":
		return "sandbox-small"
	case "token":
		if before == "webhooks" {
			return f.webhook
		}
		return "tok"
	}
	switch before {
	case "workflows", "agents":
		return f.workflow
	case "connections":
		return f.connection
	case "runs", "workflow-runs":
		return f.run
	case "api-tokens":
		return f.token
	}
	return "x"
}

var wildcard = regexp.MustCompile(`\{([A-Za-z]+)(\.\.\.)?\}`)

// textCase is one request carrying unstorable text somewhere.
type textCase struct {
	what          string
	method, path  string
	body, ctype   string
	header, value string
}

// textCases are the requests sent to one route: the text in each path
// segment the route reads, in the query, in a form body and a JSON body,
// and in a header.
func textCases(route string, f textFixtures) []textCase {
	method, pattern, ok := strings.Cut(route, " ")
	if !ok {
		method, pattern = "", route
	}
	pattern = strings.TrimSuffix(pattern, "{$}")
	segs := strings.Split(pattern, "/")
	fill := func(bad int, badValue string) string {
		out := make([]string, len(segs))
		for i, s := range segs {
			m := wildcard.FindStringSubmatch(s)
			switch {
			case m == nil:
				out[i] = s
			case i == bad:
				out[i] = badValue
			default:
				out[i] = url.PathEscape(f.value(m[1], segs[i-1]))
			}
		}
		return strings.Join(out, "/")
	}
	good := fill(-1, "")
	methods := []string{method}
	if method == "" {
		methods = []string{"GET", "POST"}
	}
	var cases []textCase
	for _, m := range methods {
		add := func(c textCase) {
			c.method = m
			if c.path == "" {
				c.path = good
			}
			cases = append(cases, c)
		}
		wild := 0
		for i, s := range segs {
			if wildcard.MatchString(s) {
				wild++
				add(textCase{what: "NUL in path segment " + s, path: fill(i, "a%00b")})
				add(textCase{what: "invalid UTF-8 in path segment " + s, path: fill(i, "a%FFb")})
			}
		}
		if wild == 0 {
			p := good + "%00"
			if strings.HasSuffix(good, "/") {
				p = good + "a%00b"
			}
			add(textCase{what: "NUL at the end of the path", path: p})
		}
		add(textCase{what: "NUL in the query", path: good + "?next=%2Fa%00b&status=a%00b&slug=a%00b&q=a%00b"})
		add(textCase{what: "invalid UTF-8 in the query", path: good + "?status=%FF&slug=%FE"})
		add(textCase{what: "invalid UTF-8 in User-Agent", header: "User-Agent", value: "agent \xff"})
		add(textCase{what: "invalid UTF-8 in Idempotency-Key", header: "Idempotency-Key", value: "key-\xfe"})
		if m == "GET" {
			continue
		}
		form := url.Values{}
		invalid := url.Values{}
		for _, name := range []string{"email", "password", "name", "label", "slug", "description", "next", "note", "comment",
			"kind", "auth", "header", "secret", "url", "output", "cap", "role", "field_apiKey", "baseUrl", "apiKey", "model", "request", "account", "decision", "code", "state"} {
			// Shaped like an email address, so it passes that check too.
			form.Set(name, "a\x00b@example.com")
			invalid.Set(name, "a\xffb@example.com")
		}
		add(textCase{what: "NUL in form fields", body: form.Encode(), ctype: "application/x-www-form-urlencoded"})
		add(textCase{what: "invalid UTF-8 in form fields", body: invalid.Encode(), ctype: "application/x-www-form-urlencoded"})
		add(textCase{what: "NUL in a JSON field", body: `{"name":"a\u0000b","label":"x","nested":{"a":["\u0000"]}}`, ctype: "application/json"})
		add(textCase{what: "NUL in a JSON key", body: `{"a\u0000b":1}`, ctype: "application/json"})
		add(textCase{what: "invalid UTF-8 in a JSON field", body: "{\"name\":\"a\xffb\"}", ctype: "application/json"})
		add(textCase{what: "NUL in JSON sent without a content type", body: `{"name":"a\u0000b"}`})
		add(textCase{what: "NUL in a multipart field", ctype: "multipart/form-data; boundary=XX",
			body: "--XX\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\na\x00b\r\n--XX--\r\n"})
	}
	return cases
}

// TestUnstorableTextIsRefusedOnEveryRoute sends text that PostgreSQL cannot
// store to every route, in every place a request carries text, signed out
// and signed in as an owner: each is answered 400 with the one message,
// never 5xx, on both databases.
func TestUnstorableTextIsRefusedOnEveryRoute(t *testing.T) {
	routes := everyRoute(t)
	each(t, func(t *testing.T, e *env) {
		f := e.textFixtures(t)
		for _, who := range []struct {
			name string
			b    *browser
		}{{"signed out", e.browser()}, {"owner", e.signIn("owner@a.example")}} {
			n := 0
			for _, route := range routes {
				for _, c := range textCases(route, f) {
					var body io.Reader
					if c.body != "" {
						body = strings.NewReader(c.body)
					}
					req, err := http.NewRequest(c.method, e.srv.URL+c.path, body)
					must(t, err)
					if c.ctype != "" {
						req.Header.Set("Content-Type", c.ctype)
					}
					if c.header != "" {
						req.Header.Set(c.header, c.value)
					}
					res := who.b.do(req)
					n++
					if res.StatusCode >= 500 {
						t.Errorf("%s, %s: %s %s: got %d, want 400; body: %.200s", who.name, route, c.what, c.path, res.StatusCode, res.Body)
						continue
					}
					wantRefused(t, who.name+", "+route+": "+c.what+" "+c.method+" "+c.path, res)
				}
			}
			t.Logf("%s: %d requests over %d routes", who.name, n, len(routes))
		}
		// The session still works: nothing above broke it.
		wantStatus(t, "dashboard after the refusals", e.signIn("owner@a.example").get("/dashboard"), 200)
	})
}

// wantRefused checks a refusal: 400 with the one message, in the JSON
// error shape on the API and webhooks.
func wantRefused(t *testing.T, what string, res response) {
	t.Helper()
	if res.StatusCode != http.StatusBadRequest {
		t.Errorf("%s: got %d, want 400; body: %.200s", what, res.StatusCode, res.Body)
		return
	}
	if strings.HasPrefix(res.Request.URL.Path, "/api/") || strings.HasPrefix(res.Request.URL.Path, "/webhooks/") {
		var body struct {
			Error struct{ Code, Message string }
		}
		if err := json.Unmarshal([]byte(res.Body), &body); err != nil || body.Error.Code != "invalid_text" || body.Error.Message != textcheck.Message {
			t.Errorf("%s: got body %.200s, want the JSON error invalid_text", what, res.Body)
		}
		return
	}
	if !strings.Contains(res.Body, textcheck.Message) {
		t.Errorf("%s: page does not say %q: %.300s", what, textcheck.Message, res.Body)
	}
}

// TestSignInWithUnstorableText is the case found first: signing in with a
// NUL in the email address, or from a browser whose User-Agent is not
// UTF-8, was a 500 on PostgreSQL.
func TestSignInWithUnstorableText(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		b := e.browser()
		for _, tc := range []struct{ what, form, agent string }{
			{"NUL in the email", "email=a%00b&password=x", ""},
			{"NUL in an email address", "email=owner%00%40a.example&password=x", ""},
			{"NUL in the password", "email=owner%40a.example&password=a%00b", ""},
			{"invalid UTF-8 in the email", "email=owner%FF%40a.example&password=x", ""},
			{"invalid UTF-8 in the User-Agent", "email=owner%40a.example&password=" + url.QueryEscape(pw), "Browser \xff"},
		} {
			req, err := http.NewRequest("POST", e.srv.URL+"/signin", strings.NewReader(tc.form))
			must(t, err)
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if tc.agent != "" {
				req.Header.Set("User-Agent", tc.agent)
			}
			wantRefused(t, "sign in with "+tc.what, b.do(req))
		}
		// Nothing was counted against the person: the next, correct
		// attempt works.
		wantRedirect(t, "sign in after", b.post("/signin", url.Values{"email": {"owner@a.example"}, "password": {pw}}), "/dashboard")
	})
}

// TestNULInHeaderValue covers header values the HTTP client refuses to
// send (a NUL), straight through the handler, signed in and out.
func TestNULInHeaderValue(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		owner := e.signIn("owner@a.example")
		base, _ := url.Parse(e.srv.URL)
		for _, cookies := range [][]*http.Cookie{nil, owner.c.Jar.Cookies(base)} {
			for _, tc := range []struct{ method, path, header string }{
				{"POST", "/signin", "User-Agent"},
				{"GET", "/dashboard", "User-Agent"},
				{"GET", "/api/v1/me", "Authorization"},
				{"POST", "/api/v1/workspaces/acme/workflows/x/runs", "Idempotency-Key"},
				{"POST", "/webhooks/abc", "X-Signature"},
			} {
				// Right credentials: a session would be stored.
				req := httptest.NewRequest(tc.method, tc.path, strings.NewReader("email=owner%40a.example&password="+url.QueryEscape(pw)))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header[tc.header] = []string{"Bearer a\x00b"}
				for _, c := range cookies {
					req.AddCookie(c)
				}
				rec := httptest.NewRecorder()
				e.server.Handler().ServeHTTP(rec, req)
				res := rec.Result()
				res.Request = req
				body, _ := io.ReadAll(res.Body)
				wantRefused(t, tc.method+" "+tc.path+" with NUL in "+tc.header, response{Response: res, Body: string(body)})
			}
		}
	})
}

// TestNamesRefuseControlCharacters: names, labels and email addresses are
// one line of visible text; a tab, a line break or a character that
// reorders text for display is refused with the field named (422).
func TestNamesRefuseControlCharacters(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		f := e.textFixtures(t)
		owner := e.signIn("owner@a.example")
		for _, tc := range []struct{ what, method, path, body, field string }{
			{"workspace name", "POST", "/api/v1/workspaces", `{"name":"Acme\tEvil","slug":"evil"}`, "name"},
			{"account name", "PATCH", "/api/v1/account", `{"name":"Agency\nA"}`, "name"},
			{"connection label", "PATCH", "/api/v1/connections/" + f.connection, `{"label":"Stripe\u202egnp.exe"}`, "label"},
			{"new connection label", "POST", "/api/v1/workspaces/acme/connections", `{"app":"stripe","label":"a\u0007b","fields":{"apiKey":"sk_test_TEXTCHECK2"}}`, "label"},
			{"API token name", "POST", "/api/v1/api-tokens", `{"name":"ci\r\nX-Injected: 1"}`, "name"},
			{"agent name", "POST", "/api/v1/workspaces/acme/agents", `{"name":"Bot\u2028two"}`, "name"},
		} {
			res := owner.api(tc.method, tc.path, tc.body)
			if res.StatusCode != http.StatusUnprocessableEntity {
				t.Errorf("%s: got %d, want 422; body: %.300s", tc.what, res.StatusCode, res.Body)
				continue
			}
			var body struct {
				Error struct{ Fields map[string]string }
			}
			must(t, json.Unmarshal([]byte(res.Body), &body))
			if msg := body.Error.Fields[tc.field]; !strings.Contains(msg, "control characters") {
				t.Errorf("%s: field %s message %q, want it to name control characters; body: %.300s", tc.what, tc.field, msg, res.Body)
			}
		}
		page := owner.post("/acme/workflows", url.Values{"name": {"Report\tweekly"}})
		wantStatus(t, "workflow name with a tab", page, 422)
		if !strings.Contains(page.Body, "control characters") {
			t.Fatalf("workflow form does not say why: %.300s", page.Body)
		}
		page = wantKept(t, owner, "workspace name with a C1 control", owner.post("/dashboard/workspaces", url.Values{"name": {"Gamma\u0085"}, "slug": {"gamma"}}), "/dashboard")
		if !strings.Contains(page.Body, "control characters") {
			t.Fatalf("workspace form does not say why: %.300s", page.Body)
		}
		for _, email := range []string{"a\tb@example.com", "a\x00b@example.com", "ann@exa\u202emple.com", "a\xffb@example.com"} {
			if _, err := account.NormalizeEmail(email); !apperr.Is(err, apperr.KindInvalid) {
				t.Errorf("NormalizeEmail(%q): got %v, want invalid", email, err)
			}
		}
	})
}

// TestGoodTextPassesTheCheck: the check refuses only what cannot be
// stored. Text in any script, a literal backslash-u in JSON, and a
// webhook's binary or NUL-carrying text body (stored as base64 and as an
// escaped JSON string) all go through, and the handler reads the body
// exactly as it was sent.
func TestGoodTextPassesTheCheck(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		f := e.textFixtures(t)
		owner := e.signIn("owner@a.example")
		wantRedirect(t, "workspace named in any script", owner.post("/dashboard/workspaces", url.Values{"name": {"Café ☕ 東京"}, "slug": {"cafe"}}), "/cafe/")
		res := owner.api("PATCH", "/api/v1/connections/"+f.connection, `{"label":"C:\\u0000 \u00e9t\u00e9"}`)
		wantStatus(t, "label with a literal backslash-u", res, 200)
		if !strings.Contains(res.Body, `C:\\u0000 été`) {
			t.Fatalf("label not stored as sent: %s", res.Body)
		}

		// An uploaded file is the handler's to judge: a workflow whose name
		// decodes to one with a NUL is refused by the name check.
		upload := "--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"w.json\"\r\nContent-Type: application/json\r\n\r\n" +
			`{"name":"Imported\u0000","graph":{"schema":1,"trigger":{"id":"start","kind":"manual"},"nodes":[],"edges":[]}}` + "\r\n--XX--\r\n"
		req, err := http.NewRequest("POST", e.srv.URL+"/acme/workflows/import", strings.NewReader(upload))
		must(t, err)
		req.Header.Set("Content-Type", "multipart/form-data; boundary=XX")
		res = wantSentBack(t, owner, "import a workflow named with a NUL", owner.do(req), "/acme/workflows", "")
		if !strings.Contains(res.Body, "NUL character") {
			t.Fatalf("import page does not say why: %.300s", res.Body)
		}

		payload := func(runID string) map[string]any {
			t.Helper()
			r := owner.api("GET", "/api/v1/workspaces/acme/runs/"+runID, "")
			wantStatus(t, "get run", r, 200)
			var body struct {
				Run struct{ TriggerPayload map[string]any }
			}
			must(t, json.Unmarshal([]byte(r.Body), &body))
			return body.Run.TriggerPayload
		}
		for _, tc := range []struct {
			what, ctype, body string
			want              any
		}{
			{"binary body", "application/octet-stream", "\x00\xff\xfe", "AP/+"},
			{"text with NUL", "text/plain", "a\x00b", "a\x00b"},
			{"JSON", "application/json", `{"name":"Zoë ☕"}`, map[string]any{"name": "Zoë ☕"}},
		} {
			req, err := http.NewRequest("POST", e.srv.URL+"/webhooks/"+f.webhook, strings.NewReader(tc.body))
			must(t, err)
			req.Header.Set("Content-Type", tc.ctype)
			r := e.browser().do(req)
			wantStatus(t, "webhook with "+tc.what, r, 202)
			var started struct{ RunID string }
			must(t, json.Unmarshal([]byte(r.Body), &started))
			if got := payload(started.RunID)["body"]; !reflect.DeepEqual(got, tc.want) {
				t.Errorf("webhook with %s: body in the payload %#v, want %#v", tc.what, got, tc.want)
			}
		}
	})
}
